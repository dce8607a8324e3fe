"""Distributed checks on the real tiny VLA, run under ``torchrun --nproc_per_node=2`` (gloo) by
test_parallel_distributed.py.

One launch runs every check (process start-up dominates on 2 cores); rank 0 writes what each check
measured into the JSON file named by ``--out``, and the test asserts on those values. Each check compares
a sharded model against a plain single-process VLA that every rank builds itself on the *global* batch,
so no second launch is needed for the reference.

Flow matching draws noise and times inside ``forward``. The model runs behind ``SeededByBatch``, which
seeds the generator from the micro-batch's own tokens before each forward, so a sample gets the same noise
whether a rank computes it or the single-process reference does (as two micro-batches of one step, through
the same ``forward_backward`` the trainer uses); the only difference left is where it is computed.
"""

from __future__ import annotations

import copy
import tempfile

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.placement_types import _StridedShard

from tests.distributed_helper import run_checks
from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.config import JobConfig
from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.vla import VLA, ForwardOptions
from torchtitan_vla.models.vla.hf_keys import load_vlm_hf, vlm_hf_state_dict
from torchtitan_vla.parallel import ParallelDims, clip_grad_norm_, parallelize_vla
from torchtitan_vla.parallel.weights import init_on_device
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.loss import LossWeights, weighted_total
from torchtitan_vla.utils.distributed import all_reduce_sum

GLOBAL_BATCH = 4
STEPS = 5


class SeededByBatch:
    """Calls the model after seeding the RNG from the micro-batch's tokens and the step."""

    def __init__(self, model, step: int):
        self.model, self.step = model, step

    def __call__(self, batch: Batch, options: ForwardOptions):
        torch.manual_seed(1_000 * self.step + int(batch.input_ids.sum()) % 997)
        return self.model(batch, options=options)


def job_config(replicate=1, shard=-1, ac="none", option="op") -> JobConfig:
    cfg = JobConfig()
    cfg.parallelism.data_parallel_replicate_degree = replicate
    cfg.parallelism.data_parallel_shard_degree = shard
    cfg.activation_checkpoint.mode = ac
    cfg.activation_checkpoint.selective_option = option
    return cfg


def split(batch: Batch, part: int, parts: int) -> Batch:
    """Samples ``part`` of ``parts`` of a Batch (position ids are (3, B, S), pixels are per patch)."""
    per = GLOBAL_BATCH // parts
    lo, hi = part * per, (part + 1) * per
    patches = batch.image_grid_thw.prod(dim=1)
    p_lo, p_hi = int(patches[:lo].sum()), int(patches[:hi].sum())
    rows = {k: v[lo:hi] for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}
    rows.update(position_ids=batch.position_ids[:, lo:hi], pixel_values=batch.pixel_values[p_lo:p_hi])
    return Batch(**rows)


def sharded_copy(reference: VLA, cfg: JobConfig, **expert) -> tuple[VLA, ParallelDims]:
    """Build on meta, parallelize, materialise, then copy the reference weights into the shards."""
    dims = ParallelDims.from_config(cfg.parallelism)
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, reference.expert_cfg)
    parallelize_vla(model, dims, cfg)
    init_on_device(model, torch.device("cpu"))
    full = reference.state_dict()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            p.copy_(distribute_tensor(full[name], p.device_mesh, p.placements) if isinstance(p, DTensor) else full[name])
    return model, dims


def micro_step(model, micro_batches: list[Batch], dp_mesh, step: int) -> float:
    """Forward/backward of this rank's micro-batches, normalized by the global counts; returns the global loss."""
    weights = LossWeights()
    losses = forward_backward(SeededByBatch(model, step), micro_batches, weights=weights, options=ForwardOptions(),
                              dp_mesh=dp_mesh)
    return weighted_total(losses.term_losses(all_reduce_sum(losses.sums, dp_mesh)), weights)


def train(model, dims: ParallelDims | None, steps: int, sgd: bool = False) -> tuple[list[float], torch.optim.Optimizer]:
    """``steps`` optimizer steps on the global batch (this rank's share), clipped to norm 1; returns the
    losses and the optimizer. AdamW's update barely depends on the gradient's scale; ``sgd`` steps in
    proportion to it, so a wrong clipping norm shows in the losses at full size."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.05) if sgd else torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
    losses = []
    for step in range(steps):
        batch = make_batch(model, batch_size=GLOBAL_BATCH, seed=100 + step)
        if dims is None:  # reference: the global batch as the per-rank halves, in one process
            losses.append(micro_step(model, [split(batch, r, 2) for r in range(2)], None, step))
        else:
            losses.append(micro_step(model, [split(batch, dims.dp_rank, dims.dp_world_size)], dims.dp_mesh, step))
        clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        opt.zero_grad()
    return losses, opt


def check_training_parity(reference: VLA, fusion: str) -> dict:
    """Per layout: the loss trajectory of the sharded run and of one process."""
    ref_losses, _ = train(copy.deepcopy(reference), None, STEPS)
    layouts = ((1, 2), (2, 1)) if fusion == "joint" else ((1, 2),)
    out = {}
    for replicate, shard in layouts:
        model, dims = sharded_copy(reference, job_config(replicate, shard))
        losses, _ = train(model, dims, STEPS)
        out[f"replicate{replicate}_shard{shard}"] = {"losses": losses, "reference": ref_losses}
    return out


def full_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad for n, p in model.named_parameters()}


def check_ac_gradients(reference: VLA) -> dict:
    """Per AC mode: the largest gradient difference from no checkpointing, relative to the gradient's size."""
    grads = {}
    for ac, option in (("none", "op"), ("full", "op"), ("selective", "op"), ("selective", 2)):
        model, dims = sharded_copy(reference, job_config(ac=ac, option=option))
        batch = split(make_batch(model, batch_size=GLOBAL_BATCH, seed=7), dims.dp_rank, dims.dp_world_size)
        micro_step(model, [batch], dims.dp_mesh, step=0)
        grads[f"{ac}_{option}"] = full_grads(model)
    base = grads.pop("none_op")
    return {key: max(float((g - base[n]).abs().max() / base[n].abs().max().clamp(min=1e-12)) for n, g in got.items())
            for key, got in grads.items()}


def check_memory_share(reference: VLA) -> dict:
    """Each rank's local parameter and optimizer-state element counts, measured from its shards."""
    model, dims = sharded_copy(reference, job_config())
    _, opt = train(model, dims, 1)
    local = sum(p.to_local().numel() for p in model.parameters())
    state = sum(v.to_local().numel() for s in opt.state.values() for v in s.values() if isinstance(v, DTensor))
    shares = [torch.zeros(2, dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(shares, torch.tensor([local, state], dtype=torch.float64))
    return {"total_params": sum(p.numel() for p in model.parameters()),
            "local_params": [int(x[0]) for x in shares], "local_optimizer_state": [int(x[1]) for x in shares]}


def check_frozen_vision(reference: VLA) -> dict:
    model, dims = sharded_copy(reference, job_config())
    model.set_trainable(["decoder", "expert"])
    vision = model.components()["vision"]
    before = {n: p.full_tensor().clone() for n, p in vision.named_parameters()}
    _, opt = train(model, dims, 2)
    return {
        "vision_params": len(before),
        "all_sharded": all(isinstance(p, DTensor) for p in vision.parameters()),
        "changed": [n for n, p in vision.named_parameters() if not torch.equal(p.full_tensor(), before[n])],
        "with_state_or_grad": [n for n, p in vision.named_parameters() if p in opt.state or p.grad is not None],
        "trainable_without_state": sum(1 for p in model.parameters() if p.requires_grad and p not in opt.state),
    }


def check_grad_norm_mixed_meshes() -> dict:
    """Gradients on a 1-D mesh, a 2-D mesh (sharded and replicated dims), a strided shard, plain tensors and
    a frozen one."""
    world = dist.get_world_size()
    mesh1 = ParallelDims(1, world, world).mesh["dp_shard"]
    mesh2 = ParallelDims(world, 1, world).mesh["dp_replicate", "dp_shard"]
    torch.manual_seed(0)
    fulls = [torch.randn(6, 3), torch.randn(5), torch.randn(4, 2), torch.randn(8, 2), torch.randn(3)]
    # A strided shard is how FSDP shards a dim that tensor parallelism already splits.
    layouts = [(mesh1, [Shard(0)]), (mesh2, [Replicate(), Shard(0)]), (mesh2, [Shard(0), Replicate()]),
               (mesh1, [_StridedShard(0, split_factor=2)]), None]
    params = []
    for full, layout in zip(fulls, layouts):
        zeros = torch.zeros_like(full)
        p = torch.nn.Parameter(zeros if layout is None else distribute_tensor(zeros, *layout))
        p.grad = full.clone() if layout is None else distribute_tensor(full.clone(), *layout)
        params.append(p)
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    expected = torch.linalg.vector_norm(torch.cat([f.flatten() for f in fulls]))
    norm = clip_grad_norm_([*params, frozen], max_norm=0.5)
    clipped = [p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad for p in params]
    error = max(float((g - f * 0.5 / (expected + 1e-6)).abs().max()) for g, f in zip(clipped, fulls))
    return {"norm": float(norm), "expected": float(expected), "clipped_max_error": error}


def lm_head_logits(model: VLA, batch: Batch) -> torch.Tensor:
    """The logits the text loss sees (at labelled positions), captured from the LM head."""
    captured = []
    handle = model.vlm.lm_head.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        torch.manual_seed(0)
        model(batch)
    handle.remove()
    return captured[0]


def write_hf_export(reference: VLA) -> str:
    """Rank 0 writes the reference's VLM as an HF checkpoint (``model.safetensors``) into a fresh folder
    that every rank gets."""
    folder = [tempfile.mkdtemp(prefix="hf_vlm_") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(folder)
    if dist.get_rank() == 0:
        save_file({k: v.contiguous() for k, v in vlm_hf_state_dict(reference).items()}, f"{folder[0]}/model.safetensors")
    dist.barrier()
    return folder[0]


def check_hf_loading(reference: VLA) -> dict:
    """Rank 0 writes the reference's VLM as an HF checkpoint; a sharded model loads it (per-rank slices)
    and must give the unsharded reference's logits: the largest difference."""
    batch = make_batch(reference, batch_size=GLOBAL_BATCH, seed=11)
    model = hf_loaded_copy(reference, job_config())
    return {"max_logit_diff": float((lm_head_logits(model, batch) - lm_head_logits(reference, batch)).abs().max())}


def hf_loaded_copy(reference: VLA, cfg: JobConfig) -> VLA:
    """A model parallelized by ``cfg`` with fresh weights, then loaded from the HF checkpoint rank 0 writes
    of the reference's VLM."""
    folder = write_hf_export(reference)
    dims = ParallelDims.from_config(cfg.parallelism)
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, reference.expert_cfg)
    parallelize_vla(model, dims, cfg)
    torch.manual_seed(123)  # fresh weights that differ from the reference's
    init_on_device(model, torch.device("cpu"))
    load_vlm_hf(model, folder)
    return model


def checks() -> dict:
    joint = tiny_vla()
    return {
        "parity": lambda: check_training_parity(joint, "joint"),
        "late": lambda: check_training_parity(tiny_vla(fusion="late", num_layers=2), "late"),
        "ac": lambda: check_ac_gradients(joint),
        "memory": lambda: check_memory_share(joint),
        "frozen": lambda: check_frozen_vision(joint),
        "grad_norm": check_grad_norm_mixed_meshes,
        "hf": lambda: check_hf_loading(joint),
    }


if __name__ == "__main__":
    run_checks(checks)
