"""Tensor-parallel checks on the real tiny VLA, run under ``torchrun --nproc_per_node=2`` (gloo) by
test_tensor_parallel.py: TP=2 against one process (losses over several steps, every gradient by
component, both fusions), the placements TP leaves, and DCP checkpoints moved between TP=2 and FSDP.

The single-process reference and the TP run see the same two micro-batches per step (a TP group reads
one data-parallel share, here the whole global batch), seeded by ``SeededByBatch`` as in dist_checks.
"""

from __future__ import annotations

import copy
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.tensor import DTensor, distribute_tensor

from tests.distributed_helper import run_checks
from tests.models.vla.helpers import make_batch, tiny_vla
from tests.parallel.dist_checks import (
    GLOBAL_BATCH,
    full_grads,
    job_config,
    lm_head_logits,
    micro_step,
    sharded_copy,
    split,
    train,
    write_hf_export,
)
from torchtitan_vla.config import JobConfig
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.models.vla.hf_keys import load_vlm_hf, not_in_hf_checkpoint
from torchtitan_vla.parallel import ParallelDims, parallelize_vla
from torchtitan_vla.parallel.weights import init_on_device

STEPS = 4


def tp_config(tp: int = 2, shard: int = -1):
    cfg = job_config(shard=shard)
    cfg.parallelism.tensor_parallel_degree = tp
    return cfg


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-12))


def component_of(model, name: str) -> str:
    """The component a parameter belongs to (the first in vision, decoder, expert order)."""
    param = dict(model.named_parameters())[name]
    for component, part in model.components().items():
        if any(p is param for p in part.parameters()):
            return component
    return "root"


def step_grads(model, dims) -> dict[str, torch.Tensor]:
    batch = make_batch(model, batch_size=GLOBAL_BATCH, seed=7)
    mesh = None if dims is None else dims.dp_mesh
    micro_step(model, [split(batch, r, 2) for r in range(2)], mesh, step=0)
    return full_grads(model)


def check_parity(reference, steps: int = STEPS) -> dict:
    """Loss trajectory and first-step gradients (largest relative error per component) of TP=2 vs one process."""
    ref_losses, _ = train_whole(copy.deepcopy(reference), None, steps)
    model, dims = sharded_copy(reference, tp_config())
    losses, _ = train_whole(model, dims, steps)
    want = step_grads(copy.deepcopy(reference), None)
    model, dims = sharded_copy(reference, tp_config())
    got = step_grads(model, dims)
    errors: dict[str, float] = {}
    for name, grad in want.items():
        if grad is None:
            continue
        part = component_of(model, name)
        errors[part] = max(errors.get(part, 0.0), relative_error(got[name], grad))
    return {"losses": losses, "reference": ref_losses, "grad_error": errors}


def train_whole(model, dims, steps):
    """``train`` with both micro-batches on every rank (TP=2 has one data-parallel rank)."""
    if dims is not None:
        assert dims.dp_world_size == 1, dims
    return train(model, None, steps)


def check_placements(reference) -> dict:
    """Which parameters TP shards, which it replicates, and which stay plain tensors."""
    model, _ = sharded_copy(reference, tp_config())
    sharded, replicated, plain = [], [], []
    for name, p in model.named_parameters():
        if not isinstance(p, DTensor):
            plain.append(name)
        elif p.placements[0].is_replicate():
            replicated.append(name)
        else:
            sharded.append(name)
    local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
    _, opt = train(model, None, 1)
    state = sum(v.to_local().numel() for s in opt.state.values() for v in s.values() if isinstance(v, DTensor))
    return {"sharded": sharded, "replicated": replicated, "plain": plain, "local_params": local,
            "local_optimizer_state": state, "total_params": sum(p.numel() for p in model.parameters())}


def saved_and_reloaded_loss(reference, save_cfg, load_cfg, fresh=tiny_vla) -> dict:
    """Train one step under ``save_cfg``, save with DCP, load into a ``fresh()`` model under ``load_cfg``:
    the next step's loss under both layouts."""
    folder = [tempfile.mkdtemp(prefix="dcp_tp_") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(folder)
    saver, dims = sharded_copy(reference, save_cfg)
    train(saver, dims if dims.dp_world_size > 1 else None, 1)
    dcp.save(saver.state_dict(), checkpoint_id=folder[0])
    loader, load_dims = sharded_copy(fresh(), load_cfg)  # different weights until loaded
    state = loader.state_dict()
    dcp.load(state, checkpoint_id=folder[0])
    loader.load_state_dict(state)

    def next_loss(model, d):
        batch = make_batch(model, batch_size=GLOBAL_BATCH, seed=55)
        if d.dp_world_size == 1:
            return micro_step(model, [split(batch, r, 2) for r in range(2)], None, step=9)
        return micro_step(model, [split(batch, d.dp_rank, d.dp_world_size)], d.dp_mesh, step=9)

    return {"saved": next_loss(saver, dims), "loaded": next_loss(loader, load_dims)}


def check_dcp(reference) -> dict:
    return {"tp_to_fsdp": saved_and_reloaded_loss(reference, tp_config(), job_config()),
            "fsdp_to_tp": saved_and_reloaded_loss(reference, job_config(), tp_config())}


def hf_loaded(reference, cfg, folder: str) -> VLA:
    """A fresh model under ``cfg``'s layout: its VLM loaded from the HF folder, everything the HF
    checkpoint does not hold (the expert) copied from the reference."""
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, reference.expert_cfg)
    if cfg.parallelism.tensor_parallel_degree > 1:
        parallelize_vla(model, ParallelDims.from_config(cfg.parallelism), cfg)
    torch.manual_seed(123)  # VLM weights unlike the reference's until loaded
    init_on_device(model, torch.device("cpu"))
    full = reference.state_dict()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not name.startswith("vlm.") or not_in_hf_checkpoint(name.removeprefix("vlm.")):
                p.copy_(distribute_tensor(full[name], p.device_mesh, p.placements) if isinstance(p, DTensor)
                        else full[name])
    load_vlm_hf(model, folder)
    return model


def check_hf_loading(reference, cfg=None) -> dict:
    """The tiny VLM's HF export loaded into a TP model and into one process: largest logit difference and
    the two losses of one step on the same batch."""
    folder = write_hf_export(reference)
    whole, split_model = hf_loaded(reference, JobConfig(), folder), hf_loaded(reference, cfg or tp_config(), folder)
    batch = make_batch(reference, batch_size=GLOBAL_BATCH, seed=11)
    halves = [split(batch, r, 2) for r in range(2)]
    return {"max_logit_diff": float((lm_head_logits(split_model, batch) - lm_head_logits(whole, batch)).abs().max()),
            "loss": micro_step(split_model, halves, None, step=3), "reference": micro_step(whole, halves, None, step=3)}


def checks() -> dict:
    joint = tiny_vla()
    return {
        "joint": lambda: check_parity(joint),
        "late": lambda: check_parity(tiny_vla(fusion="late", num_layers=2)),
        "placements": lambda: check_placements(joint),
        "dcp": lambda: check_dcp(joint),
        "hf": lambda: check_hf_loading(joint),
    }


if __name__ == "__main__":
    run_checks(checks)
