"""The synthetic-data tool: its command line writes a dataset the reader opens."""

from __future__ import annotations

import subprocess
import sys

from torchtitan_vla.data.lerobot import LeRobotReader


def test_cli_writes_every_format(tmp_path):
    out = subprocess.run([sys.executable, "-m", "torchtitan_vla.tools.synthetic_data", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for fmt in ("lerobot", "cc12m", "obelics", "all"):
        assert fmt in out
    subprocess.run([sys.executable, "-m", "torchtitan_vla.tools.synthetic_data", "lerobot", str(tmp_path / "ds"),
                    "--episodes", "2", "--frames", "4", "--size", "16", "--cameras", "1"], check=True,
                   capture_output=True)
    reader = LeRobotReader(str(tmp_path / "ds"))
    assert len(reader.episodes) == 2 and reader.camera_keys == ["observation.images.cam0"]
