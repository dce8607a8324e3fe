"""One step's forward (and backward) over its micro-batches: shared by the train step, validation and the
distributed tests, so all three compute the loss the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.action_expert.rtc import with_prefix
from torchtitan_vla.models.vla.options import ForwardOptions

from .loss import LOSS_TERMS, LossWeights, global_counts, normalized_loss, per_sample_counts


@dataclass
class StepLosses:
    """What one step's micro-batches gave, before any logging reduction."""

    counts: torch.Tensor
    """(len(LOSS_TERMS),) float64 target counts summed over all ranks and micro-batches (the normalisers)."""

    by_source: torch.Tensor
    """(2 * len(LOSS_TERMS), n_sources) float64 on this rank: rows 2i and 2i+1 are term i's loss sums and
    target counts per data source."""

    @property
    def sums(self) -> torch.Tensor:
        """(len(LOSS_TERMS),) float64 loss sums of this rank, over all micro-batches and sources."""
        return self.by_source[0::2].sum(dim=1)

    def term_losses(self, global_sums: torch.Tensor) -> dict[str, float]:
        """Mean loss per term from sums already reduced over ranks."""
        return {t: float(global_sums[i] / self.counts[i].clamp(min=1)) for i, t in enumerate(LOSS_TERMS)}


def forward_backward(
    model: nn.Module,
    microbatches: list[Batch],
    *,
    weights: LossWeights,
    options: ForwardOptions,
    dp_mesh: DeviceMesh | None,
    num_sources: int = 1,
    backward: bool = True,
    loss_scale: float = 1.0,
) -> StepLosses:
    """Run ``model`` on each micro-batch (already on the model's device) and, with ``backward``, accumulate
    the gradients of the globally normalised loss. ``loss_scale`` multiplies the backpropagated loss
    (``debug.inject_nonfinite_steps`` passes NaN to exercise the non-finite guard)."""
    if options.rtc_prefix is not None:
        microbatches = [with_prefix(batch, options.rtc_prefix) for batch in microbatches]
    sample_counts = [per_sample_counts(batch) for batch in microbatches]
    counts = global_counts(sample_counts, dp_mesh)
    by_source = torch.zeros(2 * len(LOSS_TERMS), num_sources, dtype=torch.float64, device=counts.device)
    for batch, batch_counts in zip(microbatches, sample_counts):
        out = model(batch, options=options)
        if backward:
            (normalized_loss(out, counts, weights) * loss_scale).backward()
        source = batch.source_id if batch.source_id is not None else torch.zeros_like(batch.labels[:, 0])
        for i, term in enumerate(LOSS_TERMS):
            by_source[2 * i].index_add_(0, source, getattr(out, term).detach().double())
            by_source[2 * i + 1].index_add_(0, source, batch_counts[i])
    return StepLosses(counts, by_source)
