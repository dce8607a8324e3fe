"""SIGTERM / SIGUSR1 (SLURM preemption): a checkpoint at the next step boundary, then exit code 0."""

import signal
import subprocess

import pytest

from tests.train.helpers import CONFIG, REPO, STANDIN_COMMAND
from torchtitan_vla.train.checkpoint import check_complete, read_meta

LONG = ["--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=100000", "--checkpoint.interval=100000"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_saves_at_the_next_step_and_exits_0(tmp_path, sig):
    cmd = [*STANDIN_COMMAND, "--config", str(CONFIG), f"--job.dump_folder={tmp_path}", *LONG]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        for line in proc.stdout:
            if "step 3/" in line:
                proc.send_signal(sig)
                break
        out = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, out
    finally:
        proc.kill()
    ckpts = list((tmp_path / "standin" / "checkpoints").iterdir())
    assert len(ckpts) == 1 and check_complete(ckpts[0]) is None
    step = int(ckpts[0].name.split("-")[1])
    assert read_meta(ckpts[0])["stage_step"] == step
    assert f"preempted: state saved at step {step}" in out
    # The step in progress when the signal arrived finishes and is saved; no further step starts. (How
    # many steps run between the parent reading "step 3/" and the signal's arrival depends on the load.)
    after_signal = out[out.index(f"received {sig.name}"):]
    steps_after = [line for line in after_signal.splitlines() if "INFO step " in line]
    assert len(steps_after) <= 1, steps_after
    assert step >= 3 and (not steps_after or f"step {step}/" in steps_after[0])
