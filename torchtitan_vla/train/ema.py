"""Exponential moving average of the trainable weights, kept in float32 with the same sharding."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * weight`` after every optimizer step.

    The shadow tensors mirror the parameters (DTensors stay DTensors), so checkpointing them through
    DCP and swapping them in for export needs no gathering.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"training.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.names]
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        with torch.no_grad():
            for name, shadow in zip(self.names, self.shadow):
                shadow.copy_(state[name])

    @contextlib.contextmanager
    def swapped_in(self):
        """Temporarily put the EMA weights into the model (for export or evaluation)."""
        backup = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)
