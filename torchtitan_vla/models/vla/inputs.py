"""What the VLA computes from a ``Batch`` before its layers run: the observation it conditions on
(prefix inputs and robot state), the cache that sampling reuses, and the flow-matching targets.

Robot fields are checked here against ``action_expert`` (one line naming the field and the setting) and
padded to the configured horizon and widths, padded entries zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...config.model import ActionExpert as ActionExpertConfig
from ...data.batch import Batch
from ..action_expert.flow import valid_action_mask
from ..action_expert.layers import ExpertInputs
from ..qwen3_vl.kv_cache import KVCache


@dataclass
class Observation:
    """Everything a velocity depends on besides x_t and t, computed once per batch."""

    h: torch.Tensor
    """(B, P, D) token embeddings with vision features in the placeholder slots."""
    visual_mask: torch.Tensor
    """(B, P) bool: visual positions (DeepStack targets)."""
    deepstack: list[torch.Tensor]
    """DeepStack features per level, rows in order of the visual positions."""
    cos: torch.Tensor
    """(B, P, head_dim) MRoPE cos."""
    sin: torch.Tensor
    """(B, P, head_dim) MRoPE sin."""
    mask: torch.Tensor
    """(B, 1, P, P) prefix attention mask."""
    valid: torch.Tensor
    """(B, P) bool: the prefix tokens the expert sees: False at padding and at FAST action tokens."""
    next_position: torch.Tensor
    """(B,) long: one past the largest MRoPE position of those tokens (where the suffix starts, as at
    inference, whose prompt has no FAST tokens)."""
    text_valid: torch.Tensor
    """(B, P) bool: every valid token, the FAST segment included: the VLM's own view of the sequence, which
    text generation continues (pi0-FAST's prompt ends inside the segment it opened)."""
    text_next_position: torch.Tensor
    """(B,) long: one past the largest MRoPE position of ``text_valid``: the first generated token's."""
    state: torch.Tensor | None = None
    """(B, max_state_dim) float32 padded state (continuous state mode); None when the state is text."""


@dataclass
class PrefixCache:
    """What the Euler steps of cached sampling reuse: the prefix (joint) or context (late) keys/values."""

    valid: torch.Tensor
    """(B, P) bool: valid prefix tokens."""
    state: torch.Tensor | None
    """The observation's state (see ``Observation.state``)."""
    kv_cache: KVCache | None = None
    """Joint fusion: every decoder layer's prefix keys/values."""
    context_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    """Late fusion: every expert layer's context keys/values."""
    expert_inputs: ExpertInputs | None = None
    """Joint fusion: suffix rotary angles and mask (independent of t; the condition is set per step)."""


@dataclass
class ActionTargets:
    """The clean action chunk of every sample, padded to (B, action_horizon, max_action_dim)."""

    actions: torch.Tensor
    """(B, H, A) float32, zero wherever ``valid`` is False."""
    valid: torch.Tensor
    """(B, H, A) bool: real dimensions of in-episode steps of robot samples (what the flow loss covers)."""
    has_actions: torch.Tensor
    """(B,) bool: robot samples."""


def robot_state(batch: Batch, cfg: ActionExpertConfig) -> torch.Tensor | None:
    """``batch.state`` checked and zero-padded to ``max_state_dim`` (continuous state mode), else None."""
    if cfg.state_mode != "continuous":
        return None
    state, batch_size = batch.state, batch.num_samples
    if state is None:
        raise ValueError("batch.state is missing; action_expert.state_mode = 'continuous' needs it")
    if state.dim() != 2 or state.shape[0] != batch_size:
        raise ValueError(f"batch.state has shape {tuple(state.shape)}, expected ({batch_size}, <= {cfg.max_state_dim})")
    if state.shape[1] > cfg.max_state_dim:
        raise ValueError(f"batch.state has {state.shape[1]} dims, more than action_expert.max_state_dim = {cfg.max_state_dim}")
    state = F.pad(state.float(), (0, cfg.max_state_dim - state.shape[1]))
    _raise_nonfinite("state", state, torch.ones_like(state, dtype=torch.bool))
    return state


def action_targets(batch: Batch, cfg: ActionExpertConfig) -> ActionTargets:
    """``batch.actions`` and its masks checked and padded to the configured horizon and width."""
    actions, batch_size, device = batch.actions, batch.num_samples, batch.input_ids.device
    if actions is None:
        raise ValueError("batch.actions is missing; training the Action Expert needs action chunks")
    if actions.dim() != 3 or actions.shape[0] != batch_size:
        raise ValueError(f"batch.actions has shape {tuple(actions.shape)}, expected ({batch_size}, H, action_dim)")
    steps, dims = actions.shape[1:]
    if steps > cfg.action_horizon:
        raise ValueError(
            f"batch.actions holds chunks of {steps} steps, longer than action_expert.action_horizon = {cfg.action_horizon}"
        )
    if dims > cfg.max_action_dim:
        raise ValueError(f"batch.actions has {dims} action dims, more than action_expert.max_action_dim = {cfg.max_action_dim}")
    is_pad = batch.action_is_pad
    is_pad = torch.zeros(batch_size, steps, dtype=torch.bool, device=device) if is_pad is None else is_pad.bool()
    dim_mask = batch.action_dim_mask
    dim_mask = torch.ones(batch_size, dims, dtype=torch.bool, device=device) if dim_mask is None else dim_mask.bool()
    if is_pad.shape != (batch_size, steps) or dim_mask.shape != (batch_size, dims):
        raise ValueError(
            f"batch.action_is_pad {tuple(is_pad.shape)} / batch.action_dim_mask {tuple(dim_mask.shape)} "
            f"do not match batch.actions {tuple(actions.shape)}"
        )
    has_actions = batch.has_actions
    has_actions = torch.ones(batch_size, dtype=torch.bool, device=device) if has_actions is None else has_actions.bool()
    pad_steps, pad_dims = cfg.action_horizon - steps, cfg.max_action_dim - dims
    actions = F.pad(actions.float(), (0, pad_dims, 0, pad_steps))
    valid = valid_action_mask(F.pad(dim_mask, (0, pad_dims), value=False), F.pad(is_pad, (0, pad_steps), value=True),
                              has_actions)
    _raise_nonfinite("actions", actions, valid)
    return ActionTargets(torch.where(valid, actions, 0.0), valid, has_actions)


def _raise_nonfinite(name: str, values: torch.Tensor, valid: torch.Tensor) -> None:
    bad = ~torch.isfinite(values) & valid
    if bool(bad.any()):
        samples = bad.flatten(1).any(dim=1).nonzero()[:, 0].tolist()
        raise ValueError(f"batch.{name} contains NaN/Inf in samples {samples} (at unpadded entries)")
