"""Fault-tolerant replica groups through torchft (``[fault_tolerance]``, the optional ``ft`` extra).

A torchft job is several replica groups, each an ordinary ``torchrun`` launch with its own process
group (FSDP / TP inside it), plus one lighthouse that all groups report to. Each step:

1. ``start_quorum`` (before the forward pass) asks the lighthouse for a quorum of live groups; a group
   that is behind (a restarted one) first heals: it fetches the state dicts registered with ``track``
   from a live group over torchft's checkpoint transport and jumps to its step;
2. backward; the gradients are averaged over the groups in the quorum through torchft's process group
   (FSDP: its all-reduce hook, after the reduce-scatter inside the group; a plain module:
   ``average_gradients`` after backward), i.e. the replicate dimension of HSDP is torchft's;
3. the caller runs ``optimizer.step()`` only if ``should_commit``: every rank of every group in the
   quorum agrees the step is good; a group whose peer died mid-step drops that step and carries on with
   the next quorum.

The gradient average is over groups: each group normalises its loss by its own token / element
counts, so with uneven counts across groups the result is a mean of per-group losses, not the loss
of the pooled batch (the same as DDP's averaging).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import timedelta

import torch
from torch import nn

from torchtitan_vla.config.fault_tolerance import FaultTolerance
from torchtitan_vla.utils import distributed as dist_utils


def torchft_available() -> bool:
    return importlib.util.find_spec("torchft") is not None


class ReplicaGroup:
    """This launch's membership of a torchft job: the Manager, its process group over the replica
    groups, and the hooks that route the gradient average and the optimizer step through them.

    Needs ``MASTER_ADDR`` / ``MASTER_PORT`` (the group's own store; torchrun sets them) and a lighthouse
    (``cfg.lighthouse`` or ``TORCHFT_LIGHTHOUSE``)."""

    def __init__(self, cfg: FaultTolerance, device_type: str):
        if not torchft_available():
            raise ImportError("fault_tolerance.enable needs torchft: pip install '.[ft]'")
        from torchft import Manager
        from torchft.process_group import ProcessGroupGloo, ProcessGroupNCCL

        timeout = timedelta(seconds=cfg.timeout_s)
        pg = ProcessGroupGloo(timeout=timeout) if device_type == "cpu" else ProcessGroupNCCL(timeout=timeout)
        self.manager = Manager(
            pg=pg, load_state_dict=None, state_dict=None, min_replica_size=cfg.min_replicas,
            replica_id=f"replica_{cfg.replica_id}", lighthouse_addr=cfg.lighthouse or None,
            rank=dist_utils.rank(), world_size=dist_utils.world_size(), timeout=timeout,
            quorum_timeout=timedelta(seconds=cfg.quorum_timeout_s),
            # Heal before the forward pass, so a rejoining group computes its first step on live weights.
            use_async_quorum=False,
        )

    def track(self, name: str, load_state_dict: Callable[[dict], None], state_dict: Callable[[], dict]) -> None:
        """State a rejoining group copies from a live one (model, optimizer, data position, ...)."""
        self.manager.register_state_dict_fn(name, load_state_dict, state_dict)

    def start_quorum(self) -> None:
        """Join this step's quorum (a group that is behind heals here, and ``step`` jumps to its peers')."""
        self.manager.start_quorum()

    def should_commit(self) -> bool:
        """The groups' vote on the step (after backward); True advances ``step``."""
        return self.manager.should_commit()

    def set_step(self, job_step: int) -> None:
        """Where this group is in the job (a resumed or skipped-to stage): the quorum compares the groups'
        steps, and a group that is behind heals."""
        self.manager.load_state_dict({"step": job_step, "batches_committed": self.manager.batches_committed()})

    def hook_fsdp(self, model: nn.Module) -> int:
        """Average each FSDP unit's reduced gradient shard over the groups; returns the units hooked."""
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in model.modules() if isinstance(m, FSDPModule)]
        for unit in units:
            unit.set_all_reduce_hook(lambda grad: self.manager.allreduce(grad).wait())
        return len(units)

    @torch.no_grad()
    def average_gradients(self, model: nn.Module) -> None:
        """Average the gradients of a plain (unsharded) module over the groups, after backward."""
        works = [self.manager.allreduce(p.grad) for p in model.parameters() if p.grad is not None]
        for work in works:
            work.wait()

    @property
    def step(self) -> int:
        """The job's step: a healed group jumps to its live peers' step."""
        return self.manager.current_step()

    @property
    def participants(self) -> int:
        """Groups in the current quorum."""
        return self.manager.num_participants()

    def shutdown(self) -> None:
        self.manager.shutdown(wait=False)
