"""Global-norm gradient clipping over sharded (DTensor) and plain gradients.

``torch.nn.utils.clip_grad_norm_`` stacks per-parameter norms into one tensor, which fails when the
gradients are DTensors on different meshes (e.g. a 2-D HSDP mesh next to a 1-D one) and, for plain
local shards, would miss the other ranks' parts. Here the p-th powers of the local shards are summed
per (mesh, placements) group and all-reduced over exactly the mesh dimensions the gradient is
sharded on (plain or strided shards); replicated dimensions hold copies and are not summed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Partial, Replicate

from torchtitan_vla.utils.distributed import local_tensor


def _local_pow_sum(tensors: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    """sum |t|^p over the tensors (max |t| for p = inf), in float32."""
    norms = torch._foreach_norm(tensors, norm_type)
    stacked = torch.stack([n.float() for n in norms])
    return stacked.max() if math.isinf(norm_type) else (stacked**norm_type).sum()


def total_grad_norm(parameters: Iterable[torch.Tensor], norm_type: float = 2.0) -> torch.Tensor:
    """The norm of all gradients as if they were one unsharded vector (a plain scalar tensor).

    Parameters without a gradient (frozen, or unused this step) are skipped. Every rank gets the
    same value. Plain-tensor gradients are treated as replicated (identical on every rank).
    """
    groups: dict[tuple, list[torch.Tensor]] = {}
    meshes = {}
    for p in parameters:
        g = p.grad
        if g is None:
            continue
        if isinstance(g, DTensor):
            if any(isinstance(pl, Partial) for pl in g.placements):
                raise ValueError("total_grad_norm: a gradient has a Partial placement; reduce it before clipping")
            key = (id(g.device_mesh), tuple(g.placements))
            meshes[key] = g.device_mesh
            groups.setdefault(key, []).append(g.to_local())
        else:
            groups.setdefault((None, ()), []).append(g)
    device = next((ts[0].device for ts in groups.values()), torch.device("cpu"))
    inf = math.isinf(norm_type)
    total = torch.zeros((), device=device, dtype=torch.float32)
    for key, tensors in groups.items():
        part = _local_pow_sum([t for t in tensors if t.numel() > 0] or [torch.zeros(1, device=device)], norm_type)
        if key[0] is not None:
            mesh, placements = meshes[key], key[1]
            op = dist.ReduceOp.MAX if inf else dist.ReduceOp.SUM
            for dim, placement in enumerate(placements):
                # Not ``isinstance(Shard)``: FSDP over a TP shard of the same dim is a ``_StridedShard``.
                if not placement.is_replicate() and mesh.size(dim) > 1:
                    dist.all_reduce(part, op=op, group=mesh.get_group(dim))
        total = torch.maximum(total, part) if inf else total + part
    return total if inf else total ** (1.0 / norm_type)


@torch.no_grad()
def reduce_partial_grads(parameters: Iterable[torch.Tensor]) -> None:
    """Sum gradients that are still partial over a mesh dimension into replicated ones, in place.

    A replicated parameter applied per head to a tensor-parallel activation (QK-norm) gets a partial
    gradient from each rank's heads; DTensor leaves the sum to whoever reads it next."""
    for p in parameters:
        g = p.grad
        if isinstance(g, DTensor) and any(isinstance(pl, Partial) for pl in g.placements):
            p.grad = g.redistribute(g.device_mesh, [Replicate() if isinstance(pl, Partial) else pl for pl in g.placements])


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """Scale all gradients so their global norm is at most ``max_norm``; returns the norm before.
    Partial gradients are reduced first (``reduce_partial_grads``), so the optimizer sees them summed.

    ``max_norm <= 0`` only measures. A non-finite norm is returned as is and nothing is scaled (the
    trainer decides to skip the step).
    """
    params = [p for p in parameters if p.grad is not None]
    reduce_partial_grads(params)
    norm = total_grad_norm(params, norm_type)
    if max_norm <= 0 or not torch.isfinite(norm):
        return norm
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for p in params:
        g = local_tensor(p.grad)
        g.mul_(coef.to(g.device, g.dtype))
    return norm
