"""Preemption: SIGTERM / SIGUSR1 (SLURM) and Ctrl-C (SIGINT) ask for a checkpoint at the next step
boundary and exit 0; a second Ctrl-C aborts at once (KeyboardInterrupt)."""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

from torchtitan_vla.utils.logging import logger

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class PreemptionHandler:
    """Records a preemption signal; ``should_stop()`` is the all-ranks verdict (any rank signalled)."""

    def __init__(self):
        self.requested = False
        self._previous = {}
        for sig in PREEMPTION_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        # Only set a flag: saving inside a signal handler could interrupt a collective mid-flight.
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait for the save
        if not self.requested:
            again = " (Ctrl-C again aborts without saving)" if signum == signal.SIGINT else ""
            logger.warning(f"received {signal.Signals(signum).name}: saving at the next step boundary, then exiting{again}")
        self.requested = True

    def should_stop(self, device: torch.device) -> bool:
        """Whether any rank received a signal; a collective, so every rank must call it at each step."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
