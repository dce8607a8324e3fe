"""torchft replica groups on loopback: two one-process groups (ft_replica.py) and a lighthouse. The slow
test kills one group mid-training: the other goes on alone, the restarted group rejoins from it (its
first step is the survivor's, not 0) and both end with equal weights. Its CI sibling runs both groups
to a few steps without a failure: their weights are equal only through torchft's gradient average."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.distributed_helper import REPO_ROOT, free_port
from torchtitan_vla.parallel.fault_tolerance import torchft_available

pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not torchft_available(), reason="torchft is not installed (pip install '.[ft]')")]

SCRIPT = Path(__file__).with_name("ft_replica.py")
WAIT_S = 240


class Job:
    """A lighthouse and the replica groups started against it, in one folder."""

    def __init__(self, folder: Path, min_replicas: int):
        from torchft._torchft import LighthouseServer

        self.folder, self.min_replicas = folder, min_replicas
        self.lighthouse = LighthouseServer(bind="[::]:0", min_replicas=min_replicas, join_timeout_ms=2000)
        self.env = {**os.environ, "TORCHFT_LIGHTHOUSE": self.lighthouse.address(), "PYTHONPATH": str(REPO_ROOT),
                    "OMP_NUM_THREADS": "1", "RUST_LOG": "warn"}
        self.procs: list[subprocess.Popen] = []

    def start(self, replica: int, tag: str) -> subprocess.Popen:
        f = self.folder
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--replica-id", str(replica), "--steps", "500", "--step-sleep", "0.1",
             "--min-replicas", str(self.min_replicas),
             "--progress", str(f / f"progress_{tag}"), "--out", str(f / f"{tag}.json"), "--stop-file", str(f / "stop")],
            env=self.env, cwd=REPO_ROOT, stdout=open(f / f"{tag}.log", "w"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def progress(self, tag: str) -> int:
        try:
            return int((self.folder / f"progress_{tag}").read_text())
        except (OSError, ValueError):
            return -1

    def wait_for(self, condition, what: str) -> None:
        start = time.monotonic()
        while not condition():
            assert time.monotonic() - start < WAIT_S, f"timed out waiting for {what}"
            assert all(p.poll() in (None, 0, -9) for p in self.procs), self.logs()
            time.sleep(0.2)

    def stop_at(self, step: int) -> None:
        (self.folder / "stop").write_text(str(step))

    def finish(self, *tags: str) -> dict:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.wait(WAIT_S) == 0, self.logs()
        return {tag: json.loads((self.folder / f"{tag}.json").read_text()) for tag in tags}

    def weights(self, tag: str) -> dict[str, torch.Tensor]:
        return torch.load(self.folder / f"{tag}.json.pt")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.folder.glob("*.log"))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        self.lighthouse.shutdown()


@pytest.fixture
def job(tmp_path, request):
    job = Job(tmp_path, min_replicas=request.param)
    yield job
    job.close()


def assert_equal_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("job", [2], indirect=True)  # both groups in every quorum, whoever starts first
def test_two_groups_average_gradients_into_equal_weights(job):
    job.stop_at(3)
    job.start(0, "a")
    job.start(1, "b")
    runs = job.finish("a", "b")
    # Both in every quorum from the first step (the lighthouse waits for the second to join).
    assert runs["a"]["steps"] == runs["b"]["steps"] == [0, 1, 2]
    assert runs["a"]["participants"] == runs["b"]["participants"] == [2, 2, 2]
    assert runs["a"]["losses"] != runs["b"]["losses"]  # each group trains on its own data
    assert_equal_weights(job.weights("a"), job.weights("b"))


@pytest.mark.slow
@pytest.mark.parametrize("job", [1], indirect=True)  # a single survivor may go on
def test_a_killed_group_leaves_the_other_training_and_rejoins_from_it(job):
    survivor = "a"
    job.start(0, survivor)
    victim = job.start(1, "b")
    job.wait_for(lambda: job.progress("b") >= 3, "both groups to train 3 steps")
    victim.kill()
    killed_at = job.progress(survivor)
    job.wait_for(lambda: job.progress(survivor) >= killed_at + 3, "the survivor to train on alone")
    job.start(1, "b_restarted")
    job.wait_for(lambda: job.progress("b_restarted") > killed_at + 3, "the restarted group to rejoin")
    job.stop_at(job.progress(survivor) + 3)
    runs = job.finish(survivor, "b_restarted")
    alone = [s for s, n in zip(runs[survivor]["steps"], runs[survivor]["participants"]) if n == 1]
    assert len(alone) >= 3  # steps the survivor took while the other group was dead
    rejoined = runs["b_restarted"]
    assert rejoined["steps"][0] > killed_at + 3  # healed to the survivor's step, not started over
    assert all(n == 2 for n in rejoined["participants"])
    assert rejoined["steps"][-1] == runs[survivor]["steps"][-1]
    assert_equal_weights(job.weights(survivor), job.weights("b_restarted"))


def test_launcher_script_starts_a_lighthouse_that_forms_a_quorum(tmp_path):
    from datetime import timedelta

    from torchft._torchft import LighthouseClient

    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "LIGHTHOUSE_LOG": str(tmp_path / "lighthouse.log")}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "ft_lighthouse.sh"), "--port", str(port),
                           "--min-replicas", "1", "--join-timeout-ms", "100"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    exports = dict(item.split("=", 1) for item in proc.stdout.split()[1:])
    try:
        assert exports["TORCHFT_LIGHTHOUSE"].endswith(f":{port}")
        client = LighthouseClient(f"http://127.0.0.1:{port}", timedelta(seconds=10))
        quorum = client.quorum(replica_id="replica_0", timeout=timedelta(seconds=10), address="a", store_address="s",
                               step=0, world_size=1, shrink_only=False)
        assert [m.replica_id for m in quorum.participants] == ["replica_0"]
    finally:
        os.kill(int(exports["LIGHTHOUSE_PID"]), signal.SIGTERM)
