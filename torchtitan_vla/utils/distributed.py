"""Device and process-group helpers that work the same on CUDA (NCCL) and on CPU (gloo).

The device type is chosen from what exists, never assumed: torchtitan's habit of defaulting to
``"cuda"`` breaks every CPU test (``_cuda_setDevice`` missing, CUDA-only barriers).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh


def device_type() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def backend_for(device: str) -> str:
    """The collective backend for a device type: NCCL on CUDA, gloo on CPU."""
    return "nccl" if device == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (it exports ``WORLD_SIZE`` and ``RANK``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_distributed(timeout_s: float = 600.0) -> torch.device:
    """Pick this rank's device and join torchrun's process group.

    Outside torchrun nothing is initialised and the job runs as a single process (world size 1).
    Returns the device the model and batches go to.
    """
    kind = device_type()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(device)
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group(
            backend=backend_for(kind),
            timeout=timedelta(seconds=timeout_s),
            # Binding NCCL to the device up front avoids a lazy, possibly wrong, guess later.
            device_id=device if kind == "cuda" else None,
        )
    return device


def destroy_distributed() -> None:
    """Leave the process group (safe to call when none exists)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    """Wait for every rank. NCCL needs the device id; gloo must not get one (it raises TypeError)."""
    if not dist.is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _group_of(mesh: DeviceMesh | None):
    """The process group spanning ``mesh`` (flattened when it has several dimensions)."""
    if mesh is None:
        return None
    if mesh.ndim == 1:
        return mesh.get_group()
    return mesh._flatten().get_group()


def all_reduce(tensor: torch.Tensor, mesh: DeviceMesh | None, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM):
    """All-reduce ``tensor`` in place over the ranks of ``mesh`` and return it.

    ``mesh=None`` (single process, or nothing to reduce over) returns the tensor unchanged.
    """
    if mesh is None or mesh.size() == 1:
        return tensor
    dist.all_reduce(tensor, op=op, group=_group_of(mesh))
    return tensor


def all_reduce_sum(tensor: torch.Tensor, mesh: DeviceMesh | None) -> torch.Tensor:
    """Sum of ``tensor`` over the ranks of ``mesh`` (a new tensor, without gradient)."""
    return all_reduce(tensor.detach().clone(), mesh, dist.ReduceOp.SUM)


def broadcast_object(obj):
    """Rank 0's value (any picklable object) on every rank, so all ranks take the same decision."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's value (any picklable object), in rank order, on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (its local shard or replica); a plain tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor
