"""What the trainer reads from a batch and from ``VLA.forward``'s sums and counts."""

from __future__ import annotations

import torch

from torchtitan_vla.models.action_expert.flow import valid_action_mask
from torchtitan_vla.processing.chat import IGNORE_INDEX

LOSS_TERMS = ("text", "action")
"""Loss terms: ``forward`` returns ``<term>_loss_sum``; the counts are ``text_tokens`` / ``action_elements``."""

COUNT_KEYS = {"text": "text_tokens", "action": "action_elements"}


def batch_counts(batch: dict) -> dict[str, torch.Tensor]:
    """Valid targets of each loss term, known before the forward pass (for the global normalizers).

    Text: labels other than -100. Action: real dims of in-episode steps of robot samples.
    """
    counts = {"text": (batch["labels"] != IGNORE_INDEX).sum()}
    counts["action"] = valid_action_mask(batch["action_dim_mask"], batch["action_is_pad"], batch["has_actions"]).sum()
    return counts


def loss_sums(outputs: dict) -> dict[str, torch.Tensor]:
    missing = [f"{t}_loss_sum" for t in LOSS_TERMS if f"{t}_loss_sum" not in outputs]
    if missing:
        raise KeyError(f"model forward must return {missing} (got {sorted(outputs)})")
    return {t: outputs[f"{t}_loss_sum"] for t in LOSS_TERMS}


def check_counts(outputs: dict, expected: dict[str, torch.Tensor]) -> None:
    """The model's own counts must equal the batch-derived ones the loss was normalized by."""
    for term, key in COUNT_KEYS.items():
        if key in outputs and int(outputs[key]) != int(expected[term]):
            raise RuntimeError(
                f"model forward counted {int(outputs[key])} {key}, the batch has {int(expected[term])}: "
                "the loss normalization would be wrong"
            )


def move_to(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
