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
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single, all_to_all_single_autograd
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from torchtitan_vla.models.qwen3_vl.decoder import GroupedExperts, MoE, grouped_swiglu


def _local(w: torch.Tensor) -> torch.Tensor:
    return w.to_local() if isinstance(w, DTensor) else w


class ExpertParallelExperts(GroupedExperts):
    """``GroupedExperts`` whose weights hold this rank's experts (``ep_mesh`` set by ``apply_ep``) and whose
    forward exchanges rows with the other EP ranks. Same inputs and outputs as ``GroupedExperts``."""

    ep_mesh: DeviceMesh

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        mesh = self.ep_mesh
        ep = mesh.size()
        counts = torch.diff(offsets, prepend=offsets.new_zeros(1))
        # received[r * L + j]: rows rank r sends to this rank's local expert j.
        received = all_to_all_single(counts, None, None, group=mesh).wait()
        per_rank = torch.stack([counts.view(ep, -1).sum(1), received.view(ep, -1).sum(1)])
        send, recv = per_rank.tolist()  # the one device->host copy
        rows = all_to_all_single_autograd(x, recv, send, group=mesh)
        local_experts = received.numel() // ep
        expert_of_row = torch.arange(received.numel(), device=x.device).remainder(local_experts)
        expert_of_row = torch.repeat_interleave(expert_of_row, received, output_size=sum(recv))
        order = torch.argsort(expert_of_row, stable=True)
        local_offsets = received.view(ep, local_experts).sum(0).cumsum(0, dtype=torch.int32)
        y = grouped_swiglu(rows[order], local_offsets, _local(self.w1), _local(self.w2), _local(self.w3))
        unsorted = torch.empty_like(y).index_copy(0, order, y)
        return all_to_all_single_autograd(unsorted, send, recv, group=mesh)


def check_ep(num_experts: int, ep: int, where: str) -> None:
    """EP needs an MoE model and a whole number of experts per rank; ValueError otherwise."""
    if ep == 1:
        return
    if num_experts == 0:
        raise ValueError(f"parallelism.expert_parallel_degree={ep} needs an MoE flavor; {where} has no experts")
    if ep > num_experts:
        raise ValueError(f"parallelism.expert_parallel_degree={ep} exceeds the {num_experts} experts of {where}")
    if num_experts % ep:
        raise ValueError(f"parallelism.expert_parallel_degree={ep} does not divide the {num_experts} experts of {where}")


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def apply_ep(model: nn.Module, mesh: DeviceMesh) -> list[nn.Module]:
    """Shard every MoE layer's experts over ``mesh`` (expert dimension) and switch them to the all-to-all
    forward; returns the expert modules (each becomes its own FSDP unit). Call before TP-replicating the
    rest, AC, compile and FSDP, on the meta-device model."""
    layers = moe_layers(model)
    if layers:
        check_ep(layers[0].num_experts, mesh.size(), "the decoder")
    experts = []
    for layer in layers:
        module = layer.experts
        for name, param in list(module.named_parameters(recurse=False)):
            sharded = distribute_tensor(param.data, mesh, [Shard(0)])
            module.register_parameter(name, nn.Parameter(sharded, requires_grad=param.requires_grad))
        module.__class__ = ExpertParallelExperts
        module.ep_mesh = mesh
        experts.append(module)
    return experts
