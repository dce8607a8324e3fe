"""A simulator worker process: runs the episodes it takes from the job queue and reports each one.

The policy is either in the main process (the worker sends each observation and waits for its chunk, so
the main process can batch the observations of all workers into one call) or local to the worker (the
scripted controller and the random-action baseline, which need no model). The worker keeps one
environment and rebuilds it only when the task changes (episodes arrive grouped by task).

Messages to the main process: ``("request", worker, message, rtc)``, ``("done", worker, record)``,
``("error", worker, text, bad_input)`` (``bad_input``: an init state the task does not have). This module imports no torch: spawning a worker stays cheap.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .episode import ChunkFn, EpisodeResult, EpisodeSettings, EpisodeSpec, Rtc, run_episode

PARENT_CHECK_SECONDS = 2.0
VIDEO_FPS = 20  # LIBERO's control rate: one frame per control step plays in real time

LocalPolicy = Callable[[EpisodeSpec, Any], ChunkFn]
"""``make(spec, env) -> policy`` for one episode, run inside the worker (picklable: it travels to it)."""


@dataclass(frozen=True)
class WorkerConfig:
    env_module: str
    """Module with ``LiberoEnv`` (``torchtitan_vla.envs.libero.env``; tests give a fake)."""
    image_size: int
    env_seed: int
    settings: EpisodeSettings
    video_dir: str
    local_policy: LocalPolicy | None = None


def episode_record(spec: EpisodeSpec, result: EpisodeResult, video: str | None) -> dict[str, Any]:
    """One line of the results file."""
    record = asdict(spec)
    del record["video"]
    record.update(success=result.success, steps=result.steps, policy_calls=result.policy_calls,
                  seconds=round(result.seconds, 3), finished_at=round(time.time(), 3), video=video)
    return record


def video_name(spec: EpisodeSpec, success: bool) -> str:
    return f"{spec.suite}_task{spec.task_id}_init{spec.init_state}_{'success' if success else 'failure'}.mp4"


def save_video(folder: str, spec: EpisodeSpec, result: EpisodeResult) -> str:
    from torchtitan_vla.data.video import encode_video  # loads torch: only in a worker that records a video

    os.makedirs(folder, exist_ok=True)
    path = str(Path(folder) / video_name(spec, result.success))
    encode_video(path, np.stack(result.frames), VIDEO_FPS)
    return path


def _exit_if_orphaned() -> None:
    """A worker whose main process is gone (killed: nobody would ever read its results) exits at once
    rather than simulating on."""
    if not mp.parent_process().is_alive():
        os._exit(1)


def _get(source):
    """The next item of a queue, checking for the main process while waiting."""
    while True:
        _exit_if_orphaned()
        try:
            return source.get(timeout=PARENT_CHECK_SECONDS)
        except queue.Empty:
            pass


def _checked(policy: ChunkFn) -> ChunkFn:
    """A local policy that checks for the main process at each request (no queue wait would notice)."""

    def call(message: dict, rtc: Rtc) -> np.ndarray:
        _exit_if_orphaned()
        return policy(message, rtc)

    return call


def worker_main(worker: int, config: WorkerConfig, jobs, to_main, replies) -> None:
    """Process entry point: run episodes until the ``None`` job."""
    env_module = importlib.import_module(config.env_module)
    env, env_key, spec = None, None, None

    def remote(message: dict, rtc: Rtc) -> np.ndarray:
        to_main.put(("request", worker, message, rtc))
        return _get(replies)

    try:
        while (spec := _get(jobs)) is not None:
            if env_key != (spec.suite, spec.task_id):
                if env is not None:
                    env.close()
                env = env_module.LiberoEnv(spec.suite, spec.task_id, config.image_size, config.env_seed)
                env_key = (spec.suite, spec.task_id)
            if not 0 <= spec.init_state < env.num_init_states():
                to_main.put(("error", worker, f"init state {spec.init_state} is not in {spec.suite} task {spec.task_id} "
                                              f"({env.num_init_states()} init states)", True))
                return
            policy = _checked(config.local_policy(spec, env)) if config.local_policy else remote
            result = run_episode(env, spec, config.settings, policy)
            video = save_video(config.video_dir, spec, result) if spec.video else None
            to_main.put(("done", worker, episode_record(spec, result, video)))
    except Exception as err:  # reported as one line naming the episode; the main process stops the run
        where = f"{spec.suite} task {spec.task_id} init state {spec.init_state}" if spec else "start-up"
        to_main.put(("error", worker, f"{where}: {type(err).__name__}: {err}", False))
    finally:
        if env is not None:
            env.close()
