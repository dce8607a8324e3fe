"""Asynchronous execution of action chunks: the robot executes chunk k while chunk k+1 is computed.

``ChunkRunner(policy, execute_steps, control_period_s)`` wraps anything with openpi's
``infer(obs) -> {"actions": (H, A)}`` (``serve.Policy`` in-process, or
``openpi_client.WebsocketClientPolicy`` talking to ``serve.PolicyServer``). The control loop calls
``act(obs)`` once per tick and gets one action back, never waiting for the model after the first chunk:

* once ``execute_steps - d`` actions of the current chunk have run, the next chunk is requested on a
  background thread with the current observation; d (control steps) is the measured inference delay, the
  largest latency of the recent requests in ticks;
* with ``rtc=True`` the request carries the rest of the current chunk (``prev_actions``, aligned: its row 0
  is the action of the request's own tick) and ``inference_delay`` = d (docs/realtime.md), so the new
  chunk continues the old one; ``rtc=False`` is naive asynchronous execution;
* when the new chunk arrives after d' ticks, execution continues at its row d' (the rows before it ran
  from the old chunk meanwhile). If the old chunk runs out first, its last action is held.
"""

from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .rtc_keys import DELAY_KEY, PREV_ACTIONS_KEY


class InferencePolicy(Protocol):
    def infer(self, obs: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class RunnerStats:
    """What the runner measured."""

    latencies_s: list[float] = field(default_factory=list)
    """Wall-clock seconds of every request, in order."""
    delays: list[int] = field(default_factory=list)
    """Ticks between each asynchronous request and the switch to its chunk (the real d)."""
    requested_delays: list[int] = field(default_factory=list)
    """The d each asynchronous request announced (the estimate from earlier latencies)."""
    jumps: list[float] = field(default_factory=list)
    """Euclidean distance between the last action of the old chunk and the first of the new one at each switch."""


class ChunkRunner:
    def __init__(self, policy: InferencePolicy, execute_steps: int, control_period_s: float, rtc: bool = True,
                 latency_window: int = 5):
        if execute_steps < 1 or control_period_s <= 0:
            raise ValueError(f"execute_steps ({execute_steps}) must be >= 1 and control_period_s "
                             f"({control_period_s}) > 0")
        self.policy = policy
        self.execute_steps = execute_steps
        self.control_period_s = control_period_s
        self.rtc = rtc
        self.stats = RunnerStats()
        self._recent = deque(maxlen=latency_window)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-runner")
        self._chunk: np.ndarray | None = None
        self._index = 0  # next row of the current chunk to execute
        self._pending: Future | None = None
        self._pending_tick = 0
        self._tick = 0
        self._last_action: np.ndarray | None = None

    @property
    def delay_estimate(self) -> int:
        """d: the recent requests' largest latency in control ticks, at most ``execute_steps``."""
        if not self._recent:
            return 0
        return min(self.execute_steps, math.ceil(max(self._recent) / self.control_period_s))

    def _timed_infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        result = self.policy.infer(obs)
        elapsed = time.perf_counter() - start
        self._recent.append(elapsed)
        self.stats.latencies_s.append(elapsed)
        return result

    def _request(self, obs: dict[str, Any]) -> None:
        delay = self.delay_estimate
        request = dict(obs)
        if self.rtc:
            request[PREV_ACTIONS_KEY] = np.ascontiguousarray(self._chunk[self._index:], dtype=np.float32)
            request[DELAY_KEY] = min(delay, len(self._chunk) - self._index)
        self.stats.requested_delays.append(delay)
        self._pending = self._executor.submit(self._timed_infer, request)
        self._pending_tick = self._tick

    def _switch(self) -> None:
        chunk = np.asarray(self._pending.result()["actions"], dtype=np.float32)
        delay = self._tick - self._pending_tick
        self._pending = None
        self.stats.delays.append(delay)
        self._chunk, self._index = chunk, min(delay, len(chunk) - 1)
        if self._last_action is not None:
            self.stats.jumps.append(float(np.linalg.norm(chunk[self._index] - self._last_action)))

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """The action for this control tick (the first call waits for the first chunk)."""
        if self._chunk is None:
            self._chunk = np.asarray(self._timed_infer(obs)["actions"], dtype=np.float32)
            self._index = 0
        if self._pending is not None and self._pending.done():
            self._switch()
        if self._pending is None and self._index >= self.execute_steps - self.delay_estimate:
            self._request(obs)
        action = self._chunk[min(self._index, len(self._chunk) - 1)]
        self._index += 1
        self._tick += 1
        self._last_action = action
        return action

    def close(self) -> None:
        self._executor.shutdown(wait=True)
