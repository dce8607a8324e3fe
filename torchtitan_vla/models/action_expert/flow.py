"""Flow matching in the openpi convention: t = 1 is pure noise, t = 0 is data.

``x_t = t * noise + (1 - t) * actions`` and the network regresses the constant velocity
``dx_t/dt = noise - actions``; sampling integrates from t = 1 down to t = 0 with Euler steps.
"""

from __future__ import annotations

import math

import torch


def sample_time(
    batch_size: int,
    device: torch.device,
    alpha: float = 1.5,
    beta: float = 1.0,
    scale: float = 0.999,
    offset: float = 0.001,
) -> torch.Tensor:
    """One training time per sample, ``scale * Beta(alpha, beta) + offset`` (float32, shape (B,)).

    Beta(1.5, 1) has density proportional to t^0.5, so noisier times are drawn more often.
    """
    concentration = torch.tensor([alpha, beta], dtype=torch.float32, device=device)
    draws = torch.distributions.Beta(concentration[0], concentration[1]).sample((batch_size,))
    return draws * scale + offset


def time_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(2 pi t / p_k) | cos(2 pi t / p_k)]`` of times t (B,) -> (B, dim).

    The periods are geometric from ``min_period`` to ``max_period``. Computed in float64: with
    periods as short as 4e-3 the phase is large and float32 would lose the small differences between
    neighbouring Euler times.
    """
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    phase = (2 * math.pi / period)[None, :] * t.to(torch.float64)[:, None]
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).to(torch.float32)


def noisy_actions(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = t * noise + (1 - t) * actions`` with t (B,) or per step (B, H) broadcast over (B, H, D)."""
    t = t[:, None, None] if t.dim() == 1 else t[:, :, None]
    return t * noise + (1 - t) * actions


def velocity_target(actions: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow's velocity ``dx_t/dt = noise - actions``."""
    return noise - actions


def valid_action_mask(action_dim_mask: torch.Tensor, action_is_pad: torch.Tensor, has_actions: torch.Tensor) -> torch.Tensor:
    """(B, H, D) bool: the real dimension of an in-episode step of a robot sample."""
    return action_dim_mask[:, None, :] & ~action_is_pad[:, :, None] & has_actions[:, None, None]


def flow_loss_sums(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample sum of squared velocity errors over the valid elements: (B,) float32.

    Callers zero the padded entries of the clean actions first (see ``VLA``), so ``target`` is finite
    everywhere and the mask only decides what counts (the loss module counts ``valid`` from the batch).
    """
    squared = (predicted.float() - target.float()).square() * valid
    return squared.sum(dim=(1, 2))
