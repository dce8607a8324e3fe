"""The loop's own counters and each rank's local state (data loader position, RNG streams), as the
stateful objects the checkpoint manager saves and restores."""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from typing import Any

from torchtitan_vla.utils.logging import logger

from .rng import rng_state, set_rng_state


@dataclass
class TrainState:
    stage_step: int = 0
    """Optimizer steps done in the current stage."""

    nonfinite_skipped: int = 0
    """Steps skipped by the non-finite guard since the job started."""

    nonfinite_in_a_row: int = 0
    """Consecutive skipped steps (the guard stops the run at ``training.max_consecutive_nonfinite``)."""

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, int(value))


class RankState:
    """This rank's data-loader state and RNG streams, saved under a per-rank key (ranks differ).

    Restoring creates the loader's iterator first and the RNG state last: the iterator's start draws from
    the RNG in the uninterrupted run too, before any state a checkpoint could have captured.
    """

    def __init__(self, dataloader, rank: int):
        self.dataloader = dataloader
        self.key = f"rank{rank}"
        self.iterator = None

    def state_dict(self) -> dict[str, bytes]:
        return {self.key: pickle.dumps({"dataloader": self.dataloader.state_dict(), "rng": rng_state()})}

    def load_state_dict(self, state: dict[str, bytes]) -> None:
        saved = pickle.loads(state[self.key])
        self.dataloader.load_state_dict(saved["dataloader"])
        self.iterator = iter(self.dataloader)
        set_rng_state(saved["rng"])

    def next_batch(self):
        """The next batch, starting a new pass over the data when the loader is exhausted."""
        if self.iterator is None:
            self.iterator = iter(self.dataloader)
        try:
            return next(self.iterator)
        except StopIteration:
            logger.info("data loader exhausted: starting a new pass")
            self.iterator = iter(self.dataloader)
            return next(self.iterator)
