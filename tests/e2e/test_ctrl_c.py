"""Ctrl-C in a terminal (SIGINT to the whole process group, data-loader worker included) on the real
debug curriculum: a checkpoint at the next step boundary, exit 0, and the restart resumes from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.e2e.test_exact_resume import REPO, train_args
from torchtitan_vla.train.checkpoint import check_complete


def test_ctrl_c_to_the_process_group_saves_and_exits_0(workdir):
    args = train_args("ctrl_c", "--curriculum.stages.cotrain.steps=1000", "--checkpoint.interval=1000",
                      "--data.num_workers=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, *args], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "step 4/" in line:
                os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
                break
        out = proc.stdout.read()
        assert proc.wait(timeout=300) == 0, out
    finally:
        proc.kill()
    checkpoints = workdir / "ctrl_c" / "debug_curriculum" / "checkpoints"
    saved = sorted(int(p.name.split("-")[1]) for p in checkpoints.iterdir())
    assert saved[0] == 2 and 4 <= saved[-1] <= 6, saved  # stage 1's end, then the step after Ctrl-C
    assert check_complete(checkpoints / f"step-{saved[-1]}") is None
    assert "Traceback" not in out and f"preempted: state saved at step {saved[-1]}" in out
