"""Simulated inference delay for the closed-loop evaluators: the environment keeps stepping while the
policy "thinks" for d control steps, so asynchronous execution and real-time chunking are measurable
without a robot (docs/realtime.md).

Three ways to execute chunks of which ``execute_steps`` (s) actions are used:

* ``sync``: observe, wait d steps doing nothing (the idle action), execute rows ``[0, s)`` of the chunk;
* ``naive``: asynchronous; d steps before the current chunk's row s is due, observe and request the next
  chunk; the current chunk keeps running meanwhile; then continue at the new chunk's row d;
* ``rtc``: as ``naive``, and the request carries the rest of the current chunk (aligned: row 0 is the
  action of the request's tick) and d, so the new chunk's first d rows equal what ran (real-time chunking).

The first chunk is waited for in every mode. The jump at a switch is the distance between the last action
executed from the old chunk and the first one from the new chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Execution = Literal["sync", "naive", "rtc"]
EXECUTIONS = ("sync", "naive", "rtc")

Request = Callable[[np.ndarray | None, int], np.ndarray]
"""``request(prev_actions (N, L, A) or None, d) -> chunk (N, H, A)``: observe now and ask the policy."""
Step = Callable[[np.ndarray], bool]
"""``step(actions (N, A)) -> done``: one control step of every episode; True ends the run."""


@dataclass
class DelaySchedule:
    execution: Execution = "sync"
    """``sync``, ``naive`` (asynchronous) or ``rtc`` (asynchronous with real-time chunking)."""
    delay: int = 0
    """Inference delay d in control steps (the smallest when ``max_delay`` is set)."""
    max_delay: int | None = None
    """Draw d uniformly from ``[delay, max_delay]`` per request (a random delay); None: always ``delay``."""
    seed: int = 0
    """Seed of the random delays."""
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution {self.execution!r}; expected one of {EXECUTIONS}")
        if self.delay < 0 or (self.max_delay is not None and self.max_delay < self.delay):
            raise ValueError(f"delay {self.delay} / max_delay {self.max_delay}: need 0 <= delay <= max_delay")
        self._rng = np.random.default_rng(self.seed)

    def draw(self, execute_steps: int) -> int:
        if self.max_delay is not None and self.max_delay > execute_steps:
            raise ValueError(f"max_delay {self.max_delay} exceeds execute_steps {execute_steps}")
        if self.delay > execute_steps:
            raise ValueError(f"delay {self.delay} exceeds execute_steps {execute_steps}")
        if self.max_delay is None:
            return self.delay
        return int(self._rng.integers(self.delay, self.max_delay + 1))


def run_delayed(request: Request, step: Step, execute_steps: int, schedule: DelaySchedule,
                idle: np.ndarray) -> list[np.ndarray]:
    """Run chunks until ``step`` says done; -> the jumps (N,) of every chunk switch."""
    jumps: list[np.ndarray] = []

    def run(chunk: np.ndarray, rows: range) -> bool:
        for row in rows:
            if step(chunk[:, min(row, chunk.shape[1] - 1)]):
                return True
        return False

    def wait(d: int) -> bool:
        return any(step(idle) for _ in range(d))

    chunk = request(None, 0)
    if wait(schedule.draw(execute_steps)):
        return jumps
    index = 0
    while True:
        d = schedule.draw(execute_steps)
        if schedule.execution == "sync":
            end = min(execute_steps, chunk.shape[1])
            if run(chunk, range(index, end)):
                return jumps
            last = chunk[:, end - 1]
            chunk = request(None, 0)
            if wait(d):
                return jumps
            jumps.append(np.linalg.norm(chunk[:, 0] - last, axis=-1))
            continue
        start = max(index, execute_steps - d)
        if run(chunk, range(index, start)):
            return jumps
        prev = chunk[:, start:] if schedule.execution == "rtc" else None
        new = request(prev, d)
        if run(chunk, range(start, start + d)):
            return jumps
        last = chunk[:, min(start + d, chunk.shape[1]) - 1] if d else chunk[:, max(start - 1, 0)]
        chunk, index = new, d
        jumps.append(np.linalg.norm(chunk[:, min(d, chunk.shape[1] - 1)] - last, axis=-1))


def jump_stats(jumps: list[np.ndarray]) -> dict[str, float]:
    """``mean_jump`` and ``max_jump`` over every switch of every episode (NaN without a switch)."""
    if not jumps:
        return {"mean_jump": float("nan"), "max_jump": float("nan")}
    values = np.concatenate(jumps)
    return {"mean_jump": float(values.mean()), "max_jump": float(values.max())}
