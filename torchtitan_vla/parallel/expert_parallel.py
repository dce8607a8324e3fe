"""Expert parallelism for the MoE decoder layers: each rank of the ``ep`` mesh keeps ``E / ep`` of every
layer's experts and tokens travel to them and back by all-to-all.

The MoE layer routes and sorts its (token, slot) rows by expert on every rank as without EP (the router
is replicated); only its ``GroupedExperts`` changes. Per layer and forward:

1. the per-expert row counts (E,) go to the ranks owning those experts (``all_to_all_single`` of E
   integers), then the send/receive split sizes come to the host: the one device->host copy per MoE
   layer that an all-to-all with uneven splits needs (backward reuses them; a checkpointed layer copies
   again when it is recomputed);
2. the rows go to their experts' ranks (``all_to_all_single_autograd``: its backward is the reverse
   all-to-all), arriving ordered by (source rank, local expert); a stable sort by local expert makes
   them contiguous per expert for the grouped matmuls;
3. the outputs are unsorted and sent back by the reverse all-to-all, in the order the layer sent them.

The expert weights are DTensors sharded on the expert dimension (``Shard(0)``) over ``ep``; FSDP then
makes them their own unit over the remaining data-parallel dimensions (``ParallelDims.expert_fsdp_mesh``).
Their gradients already sum every EP rank's tokens (the all-to-all's backward brings them home), so FSDP
reduces them over the remaining dimensions only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single, all_to_all_single_autograd
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Shard, distribute_tensor

from torchtitan_vla.models.qwen3_vl.decoder import GroupedExperts, MoE, grouped_swiglu
from torchtitan_vla.utils.distributed import local_tensor


def _assemble(rows: torch.Tensor, lo: int, n: int, mesh: DeviceMesh) -> torch.Tensor:
    """The (n, ...) tensor whose rows [lo, lo + len(rows)) each TP rank of ``mesh`` holds."""
    full = rows.new_zeros(n, *rows.shape[1:])
    full[lo: lo + rows.shape[0]] = rows
    dist.all_reduce(full, group=mesh.get_group())
    return full


class _TPRankRows(torch.autograd.Function):
    """Rows [lo, hi) of a tensor every TP rank holds whole; backward assembles the whole gradient from every
    rank's rows (each rank's rows reached the experts only through it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: int, hi: int, mesh: DeviceMesh) -> torch.Tensor:
        ctx.lo, ctx.n, ctx.mesh = lo, x.shape[0], mesh
        return x[lo:hi]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _assemble(grad, ctx.lo, ctx.n, ctx.mesh), None, None, None


class _TPAllRows(torch.autograd.Function):
    """Every TP rank's rows assembled into the whole tensor; backward keeps this rank's rows of the gradient,
    which is the same on every TP rank (what follows runs replicated over TP)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, lo: int, n: int, mesh: DeviceMesh) -> torch.Tensor:
        ctx.lo, ctx.hi = lo, lo + rows.shape[0]
        return _assemble(rows, lo, n, mesh)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[ctx.lo: ctx.hi], None, None, None


class ExpertParallelExperts(GroupedExperts):
    """``GroupedExperts`` whose weights hold this rank's experts (``expert_mesh`` set by ``apply_ep``) and
    whose forward exchanges rows with the other ranks of that mesh. Same inputs and outputs as
    ``GroupedExperts``. With TP (``tp_mesh``), the TP ranks hold the same rows: each sends only its share."""

    expert_mesh: DeviceMesh
    tp_mesh: DeviceMesh | None

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        counts = torch.diff(offsets, prepend=offsets.new_zeros(1))
        if self.tp_mesh is None:
            return self._exchange(x, counts)
        n, tp, r = x.shape[0], self.tp_mesh.size(), self.tp_mesh.get_local_rank()
        lo, hi = n * r // tp, n * (r + 1) // tp
        # Rows of each expert inside [lo, hi): the sorted rows of expert e are [offsets[e] - counts[e], offsets[e]).
        share = (offsets.clamp(max=hi) - (offsets - counts).clamp(min=lo)).clamp(min=0)
        y = self._exchange(_TPRankRows.apply(x, lo, hi, self.tp_mesh), share)
        return _TPAllRows.apply(y, lo, n, self.tp_mesh)

    def _exchange(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x (N, D) sorted by expert with counts (E,) rows per expert -> the experts' outputs (N, D)."""
        mesh = self.expert_mesh
        ranks = mesh.size()
        # received[r * L + j]: rows rank r sends to this rank's local expert j.
        received = all_to_all_single(counts, None, None, group=mesh).wait()
        per_rank = torch.stack([counts.view(ranks, -1).sum(1), received.view(ranks, -1).sum(1)])
        send, recv = per_rank.tolist()  # the one device->host copy
        rows = all_to_all_single_autograd(x, recv, send, group=mesh)
        local_experts = received.numel() // ranks
        expert_of_row = torch.arange(received.numel(), device=x.device).remainder(local_experts)
        expert_of_row = torch.repeat_interleave(expert_of_row, received, output_size=sum(recv))
        order = torch.argsort(expert_of_row, stable=True)
        local_offsets = received.view(ranks, local_experts).sum(0).cumsum(0, dtype=torch.int32)
        y = grouped_swiglu(rows[order], local_offsets, local_tensor(self.w1), local_tensor(self.w2), local_tensor(self.w3))
        unsorted = torch.empty_like(y).index_copy(0, order, y)
        return all_to_all_single_autograd(unsorted, send, recv, group=mesh)


def check_ep(num_experts: int, ep: int, tp: int, where: str) -> None:
    """EP needs an MoE model; the experts are split over EP x TP ranks, a whole number each; ValueError
    otherwise."""
    if ep > 1 and num_experts == 0:
        raise ValueError(f"parallelism.expert_parallel_degree={ep} needs an MoE flavor; {where} has no experts")
    split = ep * tp
    if num_experts == 0 or split == 1:
        return
    degrees = f"parallelism.expert_parallel_degree={ep}" + (f" x tensor_parallel_degree={tp}" if tp > 1 else "")
    if split > num_experts:
        raise ValueError(f"{degrees} exceeds the {num_experts} experts of {where}")
    if num_experts % split:
        raise ValueError(f"{degrees} does not divide the {num_experts} experts of {where}")


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def apply_ep(model: nn.Module, expert_mesh: DeviceMesh, tp_mesh: DeviceMesh | None) -> list[nn.Module]:
    """Shard every MoE layer's experts over ``expert_mesh`` (expert dimension; the EP ranks, times the TP
    ranks with TP) and switch them to the all-to-all forward; returns the expert modules (each becomes its
    own FSDP unit). Call before TP-replicating the rest, AC, compile and FSDP, on the meta-device model."""
    layers = moe_layers(model)
    if layers:
        tp = tp_mesh.size() if tp_mesh is not None else 1
        check_ep(layers[0].num_experts, expert_mesh.size() // tp, tp, "the decoder")
    experts = []
    for layer in layers:
        module = layer.experts
        for name, param in list(module.named_parameters(recurse=False)):
            sharded = distribute_tensor(param.data, expert_mesh, [Shard(0)])
            module.register_parameter(name, nn.Parameter(sharded, requires_grad=param.requires_grad))
        module.__class__ = ExpertParallelExperts
        module.expert_mesh, module.tp_mesh = expert_mesh, tp_mesh
        experts.append(module)
    return experts
