"""An evaluation killed mid-run resumes: the rerun with the same arguments skips the finished episodes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.eval.libero.helpers import GoalSeeker, run_fake
from torchtitan_vla.eval.libero.results import EPISODES_FILE

RUN = """
import sys
from tests.eval.libero.helpers import GoalSeeker, LocalGoalSeeker, run_fake
policy = dict(local=LocalGoalSeeker()) if sys.argv[2] == "local" else dict(policy=GoalSeeker())
run_fake(sys.argv[1], workers=2, tasks="0,1", init_states="0-5", **policy)
"""


def _lines(path: Path) -> list[str]:
    """The complete lines (the kill may cut the last one short)."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" not in status.read_text()


@pytest.mark.parametrize("where", ["main", "local"])  # the policy in the main process / in the workers
def test_killed_run_resumes_without_redoing_finished_episodes(tmp_path, where):
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo), "FAKE_ENV_STEP_SECONDS": "0.2"}  # ~3 s an episode
    process = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path), where], cwd=repo, env=env)
    log = tmp_path / EPISODES_FILE
    deadline = time.monotonic() + 120
    while len(_lines(log)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    process.send_signal(signal.SIGKILL)  # no clean-up at all: the log is all that is left
    process.wait()
    finished = [json.loads(line) for line in _lines(log)[1:]]
    assert 2 <= len(finished) < 10, "the run was not killed mid-way"
    # The orphaned simulators notice their main process is gone and exit (not after their other episodes).
    deadline = time.monotonic() + 8
    while any(_alive(int(pid)) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(int(pid)) for pid in workers)

    policy = GoalSeeker()
    document = run_fake(tmp_path, policy, workers=2, tasks="0,1", init_states="0-5")
    assert document["complete"] and len(document["episodes"]) == 12
    kept = {(e["task_id"], e["init_state"]): e for e in document["episodes"]}
    assert all(kept[(e["task_id"], e["init_state"])] == e for e in finished)  # the first run's records stay
    assert sum(policy.batch_sizes) == 2 * (12 - len(finished))  # two requests per episode, only those missing
    assert len(_lines(log)) == 1 + 12  # the provenance line and each episode once
