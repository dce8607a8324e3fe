"""Real-time chunking (RTC): the next chunk continues the one the robot is executing.

Inference-time RTC (Black, Galliker, Levine 2025, arXiv 2506.07339) samples the new chunk as an
inpainting problem. ``prev`` holds the previous chunk's actions aligned to the new chunk's steps (step i
of ``prev`` is what the old chunk planned for the time of new step i). The first ``delay`` (d) steps run
while the policy thinks, so they are frozen to ``prev``; steps ``[d, H - s)`` are guided towards ``prev``
with a soft mask that decays from 1 to 0; steps from ``H - s`` on (``s`` = execution horizon) are free.

The guidance is the paper's pseudo-inverse term, translated to this project's flow convention (openpi:
``x_t = t * noise + (1 - t) * actions``, velocity ``u = noise - actions``, t from 1 to 0; the paper has
tau = 1 - t and v = -u). The clean-chunk estimate is ``a_hat = x_t - t * u(x_t, t)``; with the weighted
error ``e = W * (prev - a_hat)`` the guided velocity is ``u - w * (d a_hat / d x_t)^T e`` and the weight
``w = min(beta, t / (1 - t) * (t^2 + (1 - t)^2) / t^2)`` (the paper's ``(1 - tau) / (tau * r_tau^2)``),
clipped at ``beta`` (``max_guidance_weight``), which also covers t = 1.

Training-time RTC (Black et al., "Training-Time Action Conditioning for Efficient Real-Time Chunking")
gives the expert a clean prefix instead: the first d actions of a training chunk enter at flow time 0
(``x = actions`` there) and carry no loss, so at inference the prefix is conditioned on by setting it,
with no guidance (``prefix_conditioning=True`` below).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...config.model import RTCSchedule as PrefixSchedule
from ...config.training import DelayDistribution
from ...data.batch import Batch

if TYPE_CHECKING:
    from ..vla.options import RTCPrefix


def prefix_weights(delay: torch.Tensor, end: torch.Tensor, horizon: int, schedule: PrefixSchedule = "exp") -> torch.Tensor:
    """The soft mask W (B, H) float32: 1 on steps ``< delay``, decaying over ``[delay, end)``, 0 from ``end`` on.

    ``linear``: ``clip((delay - 1 - i) / (end - delay + 1) + 1, 0, 1)``; ``exp`` (the paper's) multiplies that
    ramp c by ``(e^c - 1) / (e - 1)``; ``ones``: 1 up to ``end``; ``zeros``: only the frozen steps.
    ``end`` wins over ``delay`` (a delay past the overlap freezes only the overlap).
    """
    delay, end = delay.float()[:, None], end.float()[:, None]
    delay = torch.minimum(delay, end)
    steps = torch.arange(horizon, dtype=torch.float32, device=delay.device)[None, :]
    if schedule == "ones":
        return (steps < end).float()
    if schedule == "zeros":
        return (steps < delay).float()
    ramp = ((delay - 1 - steps) / (end - delay + 1) + 1).clamp(0, 1)
    if schedule == "exp":
        ramp = ramp * torch.expm1(ramp) / math.expm1(1.0)
    return torch.where(steps < end, ramp, 0.0)


def guidance_weight(t: float, max_weight: float) -> float:
    """The paper's guidance weight at flow time t (openpi convention), clipped at ``max_weight``."""
    if t >= 1.0:
        return max_weight
    if t <= 0.0:
        return 0.0
    return min(max_weight, t / (1 - t) * (t * t + (1 - t) * (1 - t)) / (t * t))


@dataclass
class RTCInputs:
    """What a chunk is conditioned on besides the observation: the previous chunk and the timing."""

    prev_actions: torch.Tensor
    """(B, L, max_action_dim or fewer) previous chunk in model (normalised) action space, aligned to the new
    chunk's steps; L <= H (steps past L are free). Missing dims are zero-padded."""
    delay: torch.Tensor
    """(B,) long: inference delay d in control steps; these steps come back equal to ``prev_actions``."""
    execution_horizon: torch.Tensor
    """(B,) long: s, the steps executed per chunk; the guided overlap ends at ``H - s`` (and at L)."""
    max_guidance_weight: float = 5.0
    """beta, the clip of the guidance weight (the paper uses 5)."""
    schedule: PrefixSchedule = "exp"
    """Soft-mask decay over the overlap (see ``prefix_weights``)."""
    prefix_conditioning: bool = False
    """Training-time RTC: set the first d steps to ``prev_actions`` at flow time 0 instead of guiding."""

    @classmethod
    def build(cls, prev_actions: torch.Tensor, delay: int | torch.Tensor, execution_horizon: int | torch.Tensor,
              **settings) -> RTCInputs:
        """From a (B, L, A) chunk and ints or (B,) tensors for d and s, on the chunk's device."""
        batch, device = prev_actions.shape[0], prev_actions.device
        as_steps = lambda v: torch.as_tensor(v, dtype=torch.long, device=device).expand(batch).clone()  # noqa: E731
        return cls(prev_actions, as_steps(delay), as_steps(execution_horizon), **settings)

    def padded(self, horizon: int, action_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (prev (B, H, A) float32 zero-padded, frozen (B, H) bool, W (B, H) float32), checked."""
        prev = self.prev_actions
        batch = prev.shape[0]
        if prev.dim() != 3 or prev.shape[1] > horizon or prev.shape[2] > action_dim:
            raise ValueError(f"rtc prev_actions has shape {tuple(prev.shape)}, expected (B, <= {horizon}, <= {action_dim})")
        for name in ("delay", "execution_horizon"):
            value = getattr(self, name)
            if tuple(value.shape) != (batch,) or bool((value < 0).any()) or bool((value > horizon).any()):
                raise ValueError(f"rtc {name} must be {batch} step counts in [0, {horizon}], got {value.tolist()}")
        if not bool(torch.isfinite(prev).all()):
            raise ValueError("rtc prev_actions contains NaN or inf")
        length = prev.shape[1]
        prev = torch.nn.functional.pad(prev.float(), (0, action_dim - prev.shape[2], 0, horizon - length))
        end = torch.clamp(horizon - self.execution_horizon, max=length)
        delay = torch.minimum(self.delay, end)
        frozen = torch.arange(horizon, device=prev.device)[None, :] < delay[:, None]
        return prev, frozen, prefix_weights(delay, end, horizon, self.schedule)


VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided_velocity(velocity_fn: VelocityFn, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                    weights: torch.Tensor, max_weight: float) -> torch.Tensor:
    """``u(x_t, t)`` corrected towards ``target`` on the steps ``weights`` (B, H) cover (the paper's Eq. 2-5).

    One vector-Jacobian product through ``velocity_fn`` per call; runs with autograd on even when the
    caller samples under ``no_grad`` (never under ``inference_mode``, whose tensors cannot be recorded).
    """
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        velocity = velocity_fn(x, t)
        estimate = x - t[:, None, None] * velocity
        error = (target - estimate.detach()) * weights[:, :, None]
        (correction,) = torch.autograd.grad(estimate, x, grad_outputs=error)
    weight = guidance_weight(float(t[0]), max_weight)
    return velocity.detach() - weight * correction.float()


def sample_delays(batch_size: int, min_delay: int, max_delay: int, distribution: DelayDistribution,
                  device: torch.device) -> torch.Tensor:
    """Training-time RTC prefix lengths (B,) long in ``[min_delay, max_delay]``.

    ``uniform``: every length equally likely. ``exponential``: P(d) proportional to ``exp(-(d - min_delay) / m)``
    with ``m = max(1, (max_delay - min_delay) / 2)``, so short delays (the common case of a fast policy)
    dominate while the longest still get trained.
    """
    lengths = torch.arange(min_delay, max_delay + 1, dtype=torch.float32, device=device)
    if distribution == "uniform":
        probs = torch.ones_like(lengths)
    else:
        probs = torch.exp(-(lengths - min_delay) / max(1.0, (max_delay - min_delay) / 2))
    return (torch.multinomial(probs, batch_size, replacement=True) + min_delay).long()


def prefix_steps(delay: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, H) bool: the first ``delay[b]`` steps of each chunk."""
    return torch.arange(horizon, device=delay.device)[None, :] < delay[:, None]


def without_prefix(valid: torch.Tensor, action_prefix: torch.Tensor | None) -> torch.Tensor:
    """A (B, H, D) flow-loss mask less training-time RTC's clean prefix (``Batch.action_prefix``: model
    inputs, not targets). The model's loss and the loss module's counts both use it, so they agree."""
    if action_prefix is None:
        return valid
    return valid & ~prefix_steps(action_prefix, valid.shape[1])[:, :, None]


def with_prefix(batch: Batch, rtc: RTCPrefix) -> Batch:
    """``batch`` with a training-time prefix length drawn per sample (``Batch.action_prefix``): drawn before
    the forward pass so the loss module counts the same steps as targets that the model leaves out."""
    delay = sample_delays(batch.num_samples, rtc.min_delay, rtc.max_delay, rtc.distribution, batch.input_ids.device)
    return dataclasses.replace(batch, action_prefix=delay)
