"""Concurrent requests -> batched policy calls, behind a bounded queue.

Every connection submits its observation and awaits its own result. One task takes the first waiting
request, then up to ``max_batch - 1`` more that arrive within ``max_wait_ms`` of it (requests that queued
while the previous batch ran are taken at once), and runs the batch on the policy thread. A request that
finds ``max_queue`` others already waiting is refused with ``ServerBusy`` instead of waiting without bound.
``max_batch = 1`` serves one request at a time, in arrival order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .protocol import RequestError


class ServerBusy(RequestError):
    """The request queue is full."""


class RequestBatcher:
    """``await submit(obs)`` -> ``(result, timing)``; ``run()`` is the task that forms and runs the batches.

    ``run_batch(observations) -> results`` runs on ``executor``; it returns one result per observation, an
    exception instance for an observation that failed alone (it is raised to that request's caller only).
    """

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], executor: Executor, *, max_batch: int,
                 max_wait_ms: float, max_queue: int):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1, max_queue >= 1, max_wait_ms >= 0; got {max_batch}, "
                             f"{max_queue}, {max_wait_ms}")
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future, float]] = asyncio.Queue(maxsize=max_queue)

    async def submit(self, obs: Any) -> tuple[Any, dict[str, float]]:
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((obs, future, time.perf_counter()))
        except asyncio.QueueFull:
            raise ServerBusy(f"server busy: {self.max_queue} requests are already waiting; retry later") from None
        return await future

    async def _next_batch(self) -> list[tuple[Any, asyncio.Future, float]]:
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [obs for obs, _, _ in batch])
            except Exception as exc:  # the whole batch failed: every request of it gets the error
                results = [exc] * len(batch)
            infer_ms = (time.perf_counter() - start) * 1000
            for (_, future, queued_at), result in zip(batch, results):
                if future.done():  # the client left while its request waited
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    timing = {"queue_ms": (start - queued_at) * 1000, "infer_ms": infer_ms, "batch_size": len(batch)}
                    future.set_result((result, timing))
