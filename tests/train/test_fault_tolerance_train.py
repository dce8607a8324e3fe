"""``[fault_tolerance]`` through train.py's trainer: two replica groups (one ``torchrun`` process each,
the stand-in model) and an in-process torchft lighthouse on loopback. Each group reads its own data
shard, so their final checkpoints are equal only through torchft's gradient average (CI). The slow
test kills one group with SIGKILL mid-training: the other trains on alone, the restarted group (same
``replica_id``) heals from it, and both end with equal weights."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.distributed_helper import REPO_ROOT, free_port
from tests.train.helpers import CONFIG, losses_by_step, read_jsonl
from torchtitan_vla.parallel.fault_tolerance import torchft_available

pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not torchft_available(), reason="torchft is not installed (pip install '.[ft]')")]

WAIT_S = 300


class Job:
    """A lighthouse and the replica groups (``train.py`` with the stand-in model) started against it."""

    def __init__(self, folder: Path, min_replicas: int, steps: int):
        from torchft._torchft import LighthouseServer

        self.folder, self.min_replicas = folder, min_replicas
        self.lighthouse = LighthouseServer(bind="[::]:0", min_replicas=min_replicas, join_timeout_ms=2000)
        self.env = {**os.environ, "TORCHFT_LIGHTHOUSE": self.lighthouse.address(), "PYTHONPATH": str(REPO_ROOT),
                    "OMP_NUM_THREADS": "1", "RUST_LOG": "warn"}
        # Only the stand-in's 'cotrain' stage (every component trainable; job steps steps + 1 .. 2 * steps),
        # a checkpoint only at its end (a restarted group must heal from its peer, not resume from disk).
        text = CONFIG.read_text().replace("steps = 6", f"steps = {steps}").replace("interval = 4", "interval = 100000")
        self.config = folder / "ft.toml"
        self.config.write_text(text)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, replica: int, tag: str, *overrides: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--nnodes=1",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "-m", "tests.train.run_standin",
               "--config", str(self.config), f"--job.dump_folder={self.folder}", f"--job.name=group{replica}",
               "--curriculum.only_stage=cotrain", "--fault_tolerance.enable", "--fault_tolerance.group_size=2",
               f"--fault_tolerance.replica_id={replica}", f"--fault_tolerance.min_replicas={self.min_replicas}",
               "--fault_tolerance.timeout_s=10", "--fault_tolerance.quorum_timeout_s=120", *overrides]
        proc = subprocess.Popen(cmd, env=self.env, cwd=REPO_ROOT, stdout=open(self.folder / f"{tag}.log", "w"),
                                stderr=subprocess.STDOUT)
        self.procs[tag] = proc
        return proc

    def losses(self, replica: int, skip_records: int = 0) -> dict[int, float]:
        """Training loss per job step of group ``replica`` (after its first ``skip_records`` metrics lines)."""
        try:
            return losses_by_step(read_jsonl(self.folder / f"group{replica}")[skip_records:])
        except (OSError, ValueError):
            return {}

    def wait_for(self, condition, what: str) -> None:
        start = time.monotonic()
        while not condition():
            assert time.monotonic() - start < WAIT_S, f"timed out waiting for {what}\n{self.logs()}"
            # The victim's torchrun reports its worker's SIGKILL as a failure (exit code 1).
            assert all(p.poll() in (None, 0) for t, p in self.procs.items() if t != "victim"), self.logs()
            time.sleep(0.2)

    def finish(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.wait(WAIT_S)
        for tag, proc in self.procs.items():
            assert tag == "victim" or proc.returncode == 0, self.logs()

    def weights(self, replica: int, step: int) -> dict[str, torch.Tensor]:
        out = self.folder / f"group{replica}.pt"
        dcp_to_torch_save(self.folder / f"group{replica}" / "checkpoints" / f"step-{step}", out)
        return torch.load(out, weights_only=False)["model"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.folder.glob("*.log"))

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.lighthouse.shutdown()


def assert_equal_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_two_groups_train_on_their_own_shards_to_equal_weights(tmp_path):
    steps = 4
    job = Job(tmp_path, min_replicas=2, steps=steps)
    try:
        job.start(0, "a")
        job.start(1, "b")
        job.finish()
        assert sorted(job.losses(0)) == sorted(job.losses(1)) == list(range(steps + 1, 2 * steps + 1))
        # Different data shards (the first step's weights are equal, so only the data can differ) ...
        assert job.losses(0)[steps + 1] != job.losses(1)[steps + 1]
        # ... and still equal weights: the gradients were averaged over the groups on every step.
        assert_equal_weights(job.weights(0, 2 * steps), job.weights(1, 2 * steps))
    finally:
        job.close()


@pytest.mark.slow
def test_a_killed_group_rejoins_from_the_survivor(tmp_path):
    steps = 500
    kill_at = steps + 3
    job = Job(tmp_path, min_replicas=1, steps=steps)
    # 10 micro-batches a step: the survivor alone must not finish before the restarted group has started.
    slow = "--training.global_batch_size=40"
    try:
        job.start(0, "survivor", slow)
        job.start(1, "victim", slow, f"--debug.sigkill_at_step={kill_at}")
        job.wait_for(lambda: job.procs["victim"].poll() is not None, "the victim's SIGKILL")
        assert "exitcode: -9" in (tmp_path / "victim.log").read_text()
        alone_from = max(job.losses(0), default=0)
        job.wait_for(lambda: max(job.losses(0), default=0) > alone_from + 20, "the survivor to train on alone")
        victim_records = len(read_jsonl(tmp_path / "group1"))
        job.start(1, "restarted", slow)  # same replica_id and run folder
        job.wait_for(lambda: job.losses(1, victim_records), "the restarted group's first step")
        first = min(job.losses(1, victim_records))
        assert first > kill_at + 20, f"the restarted group began at step {first}: it did not heal from the survivor"
        job.finish()
        assert max(job.losses(0)) == max(job.losses(1)) == 2 * steps
        assert_equal_weights(job.weights(0, 2 * steps), job.weights(1, 2 * steps))
    finally:
        job.close()
