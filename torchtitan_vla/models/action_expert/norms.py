"""Adaptive RMSNorm (pi0.5): the flow time modulates the expert's norms through zero-initialised gates."""

from __future__ import annotations

import torch
from torch import nn


class AdaRMSNorm(nn.Module):
    """``y = rmsnorm(x) * (1 + scale) + shift`` with ``[scale, shift, gate] = Linear(cond)``.

    The gate multiplies the residual branch that follows the norm. The modulation starts at zero, so
    the gate is 0 and every expert block begins as the identity (adaLN-Zero), which keeps a freshly
    initialised expert from disturbing its own residual stream.
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.modulation = nn.Linear(cond_dim, 3 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, D), cond (B, C) or (B, S, C) -> (normalised x, gate), both (B, S, D)."""
        if cond.dim() == 2:
            cond = cond[:, None, :]
        scale, shift, gate = self.modulation(cond).chunk(3, dim=-1)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + self.eps)
        return (normed * (1 + scale.float()) + shift.float()).to(x.dtype), gate.to(x.dtype)

    def init_weights(self) -> None:
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
