"""The end-to-end tests' toy-world data, generated once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A folder whose ``outputs/data/toyworld`` holds freshly generated toy-world data (the config's paths)."""
    root = tmp_path_factory.mktemp("toyworld")
    data = root / "outputs" / "data" / "toyworld"
    subprocess.run(
        [sys.executable, "-m", "torchtitan_vla.envs.toyworld.generate", "--out", str(data),
         "--episodes", "40", "--captions", "200", "--documents", "100"],
        check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, timeout=300,
    )
    return root


