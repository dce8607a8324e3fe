"""Weighted mixture of sources as one resumable IterableDataset, one independent stream per (rank, worker).

Determinism: a stream's choices (which source, augmentation draws, robot frame order) come from numpy
generators seeded by ``(seed, dp_rank, worker_id)``; its state (generator state and each source's read
position) is what ``state_dict`` returns, so torchdata's StatefulDataLoader resumes every worker exactly.
Disjointness: robot frames are a per-epoch permutation split across all ``dp_world * num_workers``
streams; web shards are split across ranks by ``split_dataset_by_node`` and across workers by
``datasets`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .sample import Sample


class SourceStream:
    """What the mixture needs from a source inside one stream."""

    skipped: int
    """Samples skipped (corrupt or unavailable media) since the mixture last read this counter."""

    def next(self, rng: np.random.Generator) -> Sample:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


StreamFactory = Callable[[int, int, int], SourceStream]
"""(source_id, stream_id, num_streams) -> the source's stream; called inside the worker."""


class MixtureDataset(IterableDataset):
    """Yields samples drawn from the sources with probabilities proportional to ``weights``."""

    def __init__(self, names: list[str], factories: list[StreamFactory], weights: list[float], seed: int,
                 dp_rank: int, dp_world_size: int):
        # Names and weights were validated when the configuration loaded (sources exist, weights >= 0 with
        # a positive sum).
        probs = np.asarray(weights, np.float64)
        self.names, self.factories = names, factories
        self.probs = probs / probs.sum()
        self.seed, self.dp_rank, self.dp_world_size = seed, dp_rank, dp_world_size
        self._streams: list[SourceStream] | None = None
        self._rng: np.random.Generator | None = None
        self._pending_state: dict | None = None

    def _stream_id(self) -> tuple[int, int, int]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return worker, self.dp_rank * workers + worker, self.dp_world_size * workers

    def _start(self) -> None:
        worker, stream_id, num_streams = self._stream_id()
        self._rng = np.random.default_rng([self.seed, self.dp_rank, worker])
        self._streams = [f(i, stream_id=stream_id, num_streams=num_streams) for i, f in enumerate(self.factories)]
        if self._pending_state is not None:
            self._rng.bit_generator.state = self._pending_state["rng"]
            for name, stream in zip(self.names, self._streams):
                stream.load_state_dict(self._pending_state["sources"][name])
            self._pending_state = None

    def __iter__(self):
        self._start()
        streams, rng = self._streams, self._rng
        active = np.flatnonzero(self.probs > 0)
        while True:
            source = int(active[rng.choice(len(active), p=self.probs[active])])
            sample = streams[source].next(rng)
            sample.skipped = np.array([s.skipped for s in streams], np.int64)
            for s in streams:
                s.skipped = 0
            yield sample

    def state_dict(self) -> dict[str, Any]:
        if self._streams is None:  # not started: whatever was loaded (or nothing) is still the state
            return dict(self._pending_state) if self._pending_state else {}
        return {
            "rng": self._rng.bit_generator.state,
            "sources": {name: s.state_dict() for name, s in zip(self.names, self._streams)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        missing = set(self.names) - set(state.get("sources", {}))
        if missing:
            raise ValueError(f"data loader state lacks the sources {sorted(missing)} (was the mixture changed?)")
        self._pending_state = state
        self._streams = None


def worker_init(_: int) -> None:
    """Keep each worker to one intra-op thread: decode and resize parallelism comes from the workers."""
    torch.set_num_threads(1)
