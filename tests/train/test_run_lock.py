"""One job per run folder: a second job exits 2 naming the holder's host and pid; a stale lock (holder
killed on this host, or no heartbeat from another host) is taken over with a warning."""

import json
import os
import socket
import subprocess
import sys
import time

from tests.train.helpers import train
from tests.train.test_checkpoint import warnings_seen  # noqa: F401 (fixture)
from torchtitan_vla.train import run_lock

HOLD = """
import sys, time
from torchtitan_vla.train.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(run_folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_job_on_a_locked_folder_exits_2_naming_host_and_pid(tmp_path, capsys):
    holder = _holder(tmp_path / "standin")
    try:
        rc, run = train(tmp_path, "--curriculum.only_stage=vlm")
        err = capsys.readouterr().err
        assert rc == 2
        assert f"host {socket.gethostname()}, pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    # SIGKILLed holder: its flock is gone, the lock is stale and taken over.
    rc, run = train(tmp_path, "--curriculum.only_stage=vlm")
    assert rc == 0
    assert json.loads((run / ".lock").read_text() or "{}") == {}  # released at the end


def test_stale_lock_of_a_dead_pid_on_this_host_is_taken_over_with_a_warning(tmp_path, warnings_seen):  # noqa: F811
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"}))
    taker = run_lock.RunLock(tmp_path)
    taker.acquire()
    try:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert any(f"pid {dead.pid}" in r.getMessage() and "stale" in r.getMessage() for r in warnings_seen)
    finally:
        taker.release()


def test_lock_from_another_host_is_respected_until_its_heartbeat_stops(tmp_path, warnings_seen):  # noqa: F811
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "started": "earlier"}))
    try:
        run_lock.RunLock(tmp_path).acquire()
        raise AssertionError("a fresh lock of another host was taken")
    except run_lock.RunFolderLocked as e:
        assert "host node-17, pid 4242" in str(e)
    old = time.time() - run_lock.HEARTBEAT_TIMEOUT_S - 10
    os.utime(lock, (old, old))
    taker = run_lock.RunLock(tmp_path)
    taker.acquire()
    taker.release()
    assert any("node-17" in r.getMessage() and "no heartbeat" in r.getMessage() for r in warnings_seen)
