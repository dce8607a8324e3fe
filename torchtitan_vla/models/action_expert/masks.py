"""Attention masks of the expert tokens (True = may attend), in the pi0 block convention.

Each expert ("suffix") token carries a block number; a suffix query sees every valid context
("prefix") key and the suffix keys whose block number is not larger than its own. pi0's
``[state | a_1 .. a_H]`` has blocks ``[1 | 2 .. 2]``: the state token sees the prefix and itself, the
action chunk sees the prefix, the state and the whole chunk (bidirectional). Prefix queries never see
suffix keys: the prefix masks come from ``qwen3_vl.masks`` and cover prefix keys only.

FAST action tokens (pi0.5 / knowledge insulation) sit at the end of a robot sample's prefix and are the
VLM's own targets: the expert never attends to them (``expert_prefix``), and no earlier prefix token
does either, even in a bidirectional prefix (``hide_later_fast``), so neither can read the answer.
"""

from __future__ import annotations

import torch


def suffix_blocks(num_condition_tokens: int, horizon: int, device=None) -> torch.Tensor:
    """Block numbers of ``[condition tokens (state and/or time) | actions]``: (num_condition_tokens + H,)."""
    return torch.tensor([1] * num_condition_tokens + [2] * horizon, dtype=torch.long, device=device)


def suffix_mask(prefix_valid: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, P + S) mask of suffix queries over ``[prefix keys | suffix keys]``.

    ``prefix_valid`` (B, P) is False at padding, which no suffix token may see.
    """
    batch, _ = prefix_valid.shape
    num_suffix = blocks.shape[0]
    to_prefix = prefix_valid[:, None, None, :].expand(batch, 1, num_suffix, -1)
    to_suffix = (blocks[None, :] <= blocks[:, None])[None, None].expand(batch, 1, -1, -1)
    return torch.cat([to_prefix, to_suffix.to(prefix_valid.device)], dim=-1)


def expert_prefix(prefix_valid: torch.Tensor, fast_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, P) the prefix keys the expert may attend to: valid tokens outside the FAST action segment."""
    if fast_mask is None:
        return prefix_valid
    return prefix_valid & ~fast_mask.to(device=prefix_valid.device, dtype=torch.bool)


def hide_later_fast(mask: torch.Tensor, fast_mask: torch.Tensor | None) -> torch.Tensor:
    """A (B, 1, P, P) prefix mask in which no query sees a FAST key after its own position: the FAST
    segment stays causal (next-token prediction) inside a bidirectional prefix-LM."""
    if fast_mask is None:
        return mask
    positions = torch.arange(mask.shape[-1], device=mask.device)
    later = positions[None, :] > positions[:, None]
    return mask & ~(fast_mask.to(device=mask.device, dtype=torch.bool)[:, None, None, :] & later)
