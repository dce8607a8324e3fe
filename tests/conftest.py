"""Test-suite configuration: markers, the slow-test switch, and CPU-friendly torch settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))


def pytest_collection_modifyitems(config, items):
    """Slow end-to-end tests run only with RUN_SLOW=1; the CI suite keeps the fast ones."""
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test; set RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    # Two cores on CI: more intra-op threads than cores only adds contention.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
