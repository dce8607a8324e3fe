"""docs/configuration.md is generated from the dataclasses and must match them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr + "\nRegenerate with: python scripts/gen_config_docs.py"
