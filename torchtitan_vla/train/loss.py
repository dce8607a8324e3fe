"""The loss contract: the model returns per-sample sums, this module counts targets and normalises.

Counts come from the batch before the forward pass (as torchtitan counts ``labels != ignore_index``):
text targets are labels other than ``IGNORE_INDEX`` of web samples, subtask targets those of robot samples
(their subtask annotations) outside the FAST action segment, FAST targets the labels inside it
(``Batch.fast_mask``), action targets the real dimensions of in-episode steps of robot samples. Each rank
divides its local sums by the counts summed over all data-parallel
ranks and all micro-batches of the step, and FSDP *sums* the gradients over ranks (gradient division is
disabled in ``parallel/fsdp.py``). That gives exactly the gradient of one process on the whole global
batch, whatever the split of padding or robot/web samples between ranks and micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.distributed.device_mesh import DeviceMesh

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.action_expert.flow import valid_action_mask
from torchtitan_vla.models.action_expert.rtc import without_prefix
from torchtitan_vla.models.vla.options import LossSums
from torchtitan_vla.processing.chat import IGNORE_INDEX
from torchtitan_vla.utils.distributed import all_reduce_sum

LOSS_TERMS = ("text", "action", "subtask", "fast")
"""The terms of ``LossSums``, in the order every reduction and metric uses."""


@dataclass
class LossWeights:
    """Weight of each term in the optimised loss (``training.text_loss_weight`` / ``action_loss_weight`` /
    ``subtask_loss_weight`` / ``fast_loss_weight``)."""

    text: float = 1.0
    action: float = 1.0
    subtask: float = 1.0
    fast: float = 0.0


def per_sample_counts(batch: Batch) -> torch.Tensor:
    """(len(LOSS_TERMS), B) float64 targets of each sample, in ``LOSS_TERMS`` order: labelled web tokens,
    valid action elements (outside ``batch.action_prefix``), labelled robot (subtask) tokens, labelled FAST tokens."""
    labelled = batch.labels != IGNORE_INDEX
    fast = torch.zeros_like(labelled) if batch.fast_mask is None else labelled & batch.fast_mask.bool()
    tokens = (labelled & ~fast).sum(dim=1)
    robot = batch.robot_rows.to(tokens.device)
    text, subtask = torch.where(robot, 0, tokens), torch.where(robot, tokens, 0)
    action = torch.zeros_like(text)
    if batch.actions is not None:
        has_actions = batch.has_actions
        if has_actions is None:
            has_actions = torch.ones(batch.num_samples, dtype=torch.bool, device=batch.actions.device)
        valid = valid_action_mask(batch.action_dim_mask, batch.action_is_pad, has_actions)
        action = without_prefix(valid, batch.action_prefix).sum(dim=(1, 2))
    return torch.stack([text, action, subtask, fast.sum(dim=1)]).double()


def global_counts(sample_counts: Iterable[torch.Tensor], dp_mesh: DeviceMesh | None) -> torch.Tensor:
    """(len(LOSS_TERMS),) targets of every micro-batch of the step (``per_sample_counts`` of each), summed
    over the data-parallel ranks in one all-reduce."""
    local = torch.stack([counts.sum(dim=1) for counts in sample_counts]).sum(dim=0)
    return all_reduce_sum(local, dp_mesh)


def normalized_loss(sums: LossSums, global_counts: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """``sum_t weight_t * sum(sums.t) / global_count_t``: the scalar one micro-batch backpropagates.

    A term with no target anywhere this step (no robot sample on any rank) contributes zero rather than
    NaN; its sum stays in the graph so every rank runs the same backward.
    """
    total = sums.text.new_zeros(())
    for i, term in enumerate(LOSS_TERMS):
        count = global_counts[i].clamp(min=1).to(torch.float32)
        total = total + getattr(weights, term) * getattr(sums, term).sum() / count
    return total


def weighted_total(term_losses: dict[str, float], weights: LossWeights) -> float:
    """The loss as the optimiser sees it, from per-term mean losses (for logging)."""
    return sum(getattr(weights, term) * term_losses[term] for term in LOSS_TERMS)
