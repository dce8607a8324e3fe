"""One job per run folder: rank 0 holds ``<run folder>/.lock`` (host, pid, start time, heartbeat).

The lock is an ``fcntl.flock`` on the file, which the kernel drops when the holder dies, so a job killed
with SIGKILL on this host never blocks the next one. The file's content names the holder for the error
message; its mtime is a heartbeat refreshed by a background thread, for holders on other hosts (where
flock may not reach, e.g. some network file systems): a lock whose heartbeat is older than
``HEARTBEAT_TIMEOUT_S``, or whose holder pid is gone on this host, is stale and taken over with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import logger

LOCK_NAME = ".lock"
HEARTBEAT_S = 30.0
HEARTBEAT_TIMEOUT_S = 300.0
"""A lock not refreshed for this long belongs to a dead job (the heartbeat runs every 30 s)."""


class RunFolderLocked(RuntimeError):
    """Another live job holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # exists, owned by someone else
    return True


def _stale_reason(holder: dict, age_s: float) -> str | None:
    """Why a recorded holder whose flock is free no longer holds the folder, or ``None`` if it may still
    be running (on another host, where its flock may not be visible)."""
    if holder.get("host") == socket.gethostname():
        # flock works on this host, and it is free: the holder is dead (or its pid reused since).
        alive = _pid_alive(int(holder.get("pid", -1)))
        return "its process no longer holds the lock" if alive else "its process is gone"
    if age_s > HEARTBEAT_TIMEOUT_S:
        return f"no heartbeat for {age_s:.0f} s"
    return None


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """``acquire()`` takes the lock or raises ``RunFolderLocked`` naming the holder; ``release()`` frees it."""

    def __init__(self, run_folder: str | Path):
        self.path = Path(run_folder) / LOCK_NAME
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._read(fd)
            os.close(fd)
            raise RunFolderLocked(f"run folder {self.path.parent} is in use by another job ({_describe(holder)}); "
                                  f"stop it or choose another job.name / job.dump_folder") from None
        holder = self._read(fd)
        if holder:  # left by a job that did not release it
            reason = _stale_reason(holder, time.time() - os.fstat(fd).st_mtime)
            if reason is None:
                os.close(fd)
                raise RunFolderLocked(f"run folder {self.path.parent} is in use by another job ({_describe(holder)}, "
                                      f"heartbeat within {HEARTBEAT_TIMEOUT_S:.0f} s); stop it or choose another "
                                      "job.name / job.dump_folder")
            logger.warning(f"taking over the stale lock {self.path} ({_describe(holder)}: {reason})")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        self._thread = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
            return {"host": "unknown (unreadable lock file)"}

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            os.utime(self.path)

    def release(self) -> None:
        if self._fd is None:
            return
        self._stop.set()
        self._thread.join()
        # Emptied, not deleted: a job that opened the file just before would otherwise lock a deleted inode
        # while a third creates a new file and locks that.
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def acquire_on_rank0(run_folder: str | Path, rank: int) -> RunLock:
    """Rank 0 takes the run folder's lock; every rank raises ``RunFolderLocked`` if it could not."""
    lock = RunLock(run_folder)
    error = None
    if rank == 0:
        try:
            lock.acquire()
        except RunFolderLocked as e:
            error = str(e)
    error = dist_utils.broadcast_object(error)
    if error is not None:
        raise RunFolderLocked(error)
    return lock
