"""The main process of an evaluation: N simulator workers (spawned), one policy, batched calls.

The main process hands out the episodes, waits for the first message of any worker, takes every other
message already waiting (and, for up to ``batch_wait`` seconds, those still coming until every live worker
is waiting), and answers all the observations among them with ONE policy call
(``BatchPolicy.infer_batch``): with N workers the policy sees batches of up to N observations. Each
finished episode is appended to the results log as it arrives, so a run that stops for any reason keeps
what it finished.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .episode import EpisodeSpec, Rtc
from .worker import WorkerConfig, worker_main

POLL_SECONDS = 2.0  # how often a quiet run checks that its workers are alive


class BatchPolicy(Protocol):
    """A policy in the main process: one chunk (H, >= 7) per (observation message, rtc) pair."""

    def infer_batch(self, requests: list[tuple[dict, Rtc]]) -> list[np.ndarray]: ...


class WorkerError(RuntimeError):
    """An episode could not run (a simulator error, a bad chunk): the message names the episode."""

    def __init__(self, message: str, bad_input: bool = False):
        super().__init__(message)
        self.bad_input = bad_input


def _first_message(to_main, workers: list) -> tuple:
    while True:
        try:
            return to_main.get(timeout=POLL_SECONDS)
        except queue.Empty:
            for i, process in enumerate(workers):
                if process.exitcode not in (None, 0):
                    raise WorkerError(f"simulator worker {i} died (exit code {process.exitcode})") from None


def _messages(to_main, workers: list, batch_wait: float) -> list[tuple]:
    """The first message to arrive, every other one already waiting, and those arriving within
    ``batch_wait`` seconds of the first, until every live worker is waiting for a chunk."""
    messages = [_first_message(to_main, workers)]
    deadline = time.monotonic() + batch_wait
    while True:
        requests = sum(m[0] == "request" for m in messages)
        if any(m[0] == "error" for m in messages) or requests >= sum(p.is_alive() for p in workers):
            return messages
        try:
            left = deadline - time.monotonic()
            messages.append(to_main.get(timeout=left) if left > 0 else to_main.get_nowait())
        except queue.Empty:
            return messages


def run_episodes(specs: list[EpisodeSpec], config: WorkerConfig, num_workers: int, policy: BatchPolicy | None,
                 on_done: Callable[[dict[str, Any]], None], batch_wait: float = 0.0) -> None:
    """Run ``specs`` on ``num_workers`` worker processes; ``on_done(record)`` for each finished episode.
    ``policy`` answers the workers' requests (None: ``config.local_policy`` runs inside the workers);
    ``batch_wait``: seconds a request may wait for other workers' requests to join its batch."""
    if not specs:
        return
    if policy is None and config.local_policy is None:
        raise ValueError("run_episodes needs a policy or a local policy")
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: no forked MuJoCo/GL or torch state
    jobs, to_main = ctx.Queue(), ctx.Queue()
    num_workers = max(1, min(num_workers, len(specs)))
    replies = [ctx.Queue() for _ in range(num_workers)]
    for spec in specs:
        jobs.put(spec)
    for _ in range(num_workers):
        jobs.put(None)
    workers = [ctx.Process(target=worker_main, args=(i, config, jobs, to_main, replies[i]), daemon=True,
                           name=f"libero-sim-{i}") for i in range(num_workers)]
    for process in workers:
        process.start()
    remaining = len(specs)
    try:
        while remaining:
            requests = []
            for kind, worker, *payload in _messages(to_main, workers, batch_wait):
                if kind == "done":
                    on_done(payload[0])
                    remaining -= 1
                elif kind == "error":
                    raise WorkerError(f"simulator worker {worker}: {payload[0]}", bad_input=payload[1])
                else:
                    requests.append((worker, payload[0], payload[1]))
            if requests:
                chunks = policy.infer_batch([(message, rtc) for _, message, rtc in requests])
                for (worker, _, _), chunk in zip(requests, chunks):
                    replies[worker].put(np.asarray(chunk, np.float32))
    finally:
        for process in workers:
            if remaining:
                process.terminate()
            process.join(timeout=30)
