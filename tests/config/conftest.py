"""Shared helpers of the configuration tests: TOML files, fake datasets, ``train.py``'s ``main``."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def write_toml(folder: Path, text: str, name: str = "cfg.toml") -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def fake_lerobot(root: Path, state_dim: int = 2, action_dim: int = 2,
                 cameras: tuple[str, ...] = ("observation.images.top", "observation.images.wrist")) -> str:
    """A LeRobot root with just ``meta/info.json``: all the load-time checks read."""
    features = {
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "action": {"dtype": "float32", "shape": [action_dim]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        **{cam: {"dtype": "video", "shape": [96, 96, 3]} for cam in cameras},
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 10, "features": features}))
    return str(root)


def _train_entry():
    spec = importlib.util.spec_from_file_location("train_entry", REPO / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` run as ``train.main`` in this process, with its output captured: the same code
    path as the command line without a process start (~2.5 s of CPU each, hundreds of cases). An exception
    that escaped ``main`` would fail the test here just as a traceback would there; a few tests in
    ``test_stages.py`` still launch the real process."""
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _train_entry().main(list(args))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["train.py", *args], code, out.getvalue(), err.getvalue())


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, exactly one ``error:`` line on stderr holding every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# A valid two-stage job over one web and one LeRobot source (paths filled in by the ``job`` fixture).
JOB = """
[action_expert]
action_horizon = 4
max_action_dim = 4
max_state_dim = 4

[data]
mixture = {{ web = 1.0 }}

[[data.sources]]
name = "web"
kind = "cc12m"
path = "{web}"

[[data.sources]]
name = "robot"
kind = "lerobot"
path = "{robot}"
camera_keys = ["observation.images.top", "observation.images.wrist"]
wrist_camera_keys = ["observation.images.wrist"]

[training]
trainable = ["vision", "decoder"]

[[curriculum.stages]]
name = "pretrain"
steps = 3

[[curriculum.stages]]
name = "cotrain"
steps = 5
[curriculum.stages.data]
mixture = {{ robot = 0.8, web = 0.2 }}
[curriculum.stages.training]
trainable = ["vision", "decoder", "expert"]
{extra}
"""


class Job:
    """Writes ``JOB`` (plus extra TOML appended to the last stage or as new tables) into a tmp folder."""

    def __init__(self, root: Path):
        self.root = root
        self.web = root / "web"
        self.web.mkdir()
        self.robot = fake_lerobot(root / "robot")

    def toml(self, extra: str = "", **paths: str) -> str:
        values = {"web": str(self.web), "robot": self.robot, **paths}
        return write_toml(self.root, JOB.format(extra=textwrap.dedent(extra), **values))


@pytest.fixture
def job(tmp_path) -> Job:
    return Job(tmp_path)
