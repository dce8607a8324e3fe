"""A 2-rank run killed (SIGKILL) after a checkpoint and restarted logs the same losses as an
uninterrupted run, across a stage boundary."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.distributed_helper import run_torchrun
from tests.train.helpers import CONFIG, HERE, losses_by_step, read_jsonl

SCRIPT = HERE / "run_standin.py"
ARGS = [f"--curriculum.stages.{s}.steps=3" for s in ("vlm", "cotrain", "finetune")] + [
    "--checkpoint.interval=2",
    "--training.local_batch_size=2",
]


@pytest.mark.distributed
def test_sigkill_then_restart_reproduces_the_uninterrupted_losses(tmp_path):
    def launch(name, *extra, check=True):
        args = ["--config", str(CONFIG), f"--job.dump_folder={tmp_path}", f"--job.name={name}", *ARGS, *extra]
        return run_torchrun(SCRIPT, args, nproc=2, timeout=240, check=check)

    with ThreadPoolExecutor(2) as pool:
        reference = pool.submit(launch, "reference")
        crashed = pool.submit(launch, "crashed", "--debug.sigkill_at_step=6", check=False)
        reference.result()
        assert crashed.result().returncode != 0
    ckpts = tmp_path / "crashed" / "checkpoints"
    assert "step-4" in {p.name for p in ckpts.iterdir()}, "the crash came after the step-4 checkpoint"
    assert not (ckpts / "step-6").exists()

    restarted = launch("crashed")
    assert "resuming from" in restarted.stdout and "step-4" in restarted.stdout
    expected = losses_by_step(read_jsonl(tmp_path / "reference"))
    got = losses_by_step(read_jsonl(tmp_path / "crashed"))
    assert sorted(got) == sorted(expected) == list(range(1, 10))
    for step in range(5, 10):
        assert got[step] == pytest.approx(expected[step], abs=1e-6), f"step {step}"
