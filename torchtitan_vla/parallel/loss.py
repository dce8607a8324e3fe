"""Loss normalization by globally all-reduced counts (valid text tokens, valid action elements).

Each rank returns loss *sums* and *counts*. Dividing the local sum by the global count, and letting
FSDP *sum* the gradients over ranks (gradient division is disabled in ``parallel/fsdp.py``), gives
exactly the gradient of ``sum over all ranks / global count``: the same as one process on the whole
global batch, whatever the split of padding or robot/web samples between ranks.
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh

from torchtitan_vla.utils.distributed import all_reduce_sum


def global_counts(counts: dict[str, torch.Tensor | int | float], dp_mesh: DeviceMesh | None) -> dict[str, torch.Tensor]:
    """Sum each count over the data-parallel ranks (one all-reduce for all of them).

    With gradient accumulation, call it once on the counts of all micro-batches of the step
    before their forward passes, and pass the result to ``normalize_loss`` for each micro-batch.
    """
    names = sorted(counts)
    if not names:
        return {}
    device = next((c.device for c in counts.values() if isinstance(c, torch.Tensor)), torch.device("cpu"))
    local = torch.stack([torch.as_tensor(counts[n], dtype=torch.float64, device=device).detach() for n in names])
    summed = all_reduce_sum(local, dp_mesh)
    return dict(zip(names, summed.unbind(0)))


def normalize_loss(
    sums: dict[str, torch.Tensor],
    counts: dict[str, torch.Tensor],
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """``sum_k weights[k] * sums[k] / counts[k]`` with counts already global.

    A term whose global count is zero (e.g. no robot sample anywhere this step) contributes zero
    instead of NaN; its sum is still part of the graph so every rank runs the same backward.
    """
    missing = sorted(set(sums) - set(counts))
    if missing:
        raise ValueError(f"normalize_loss: no count for loss terms {missing} (counts: {sorted(counts)})")
    weights = weights or {}
    total = None
    for name in sorted(sums):
        term = weights.get(name, 1.0) * sums[name] / counts[name].clamp(min=1).to(sums[name].dtype)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("normalize_loss: no loss terms given")
    return total


def normalized_loss(
    sums: dict[str, torch.Tensor],
    counts: dict[str, torch.Tensor | int | float],
    dp_mesh: DeviceMesh | None,
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """Local sums and local counts -> the loss normalized by the counts summed over ``dp_mesh``."""
    return normalize_loss(sums, global_counts(counts, dp_mesh), weights)
