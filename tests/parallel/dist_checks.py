"""Distributed checks on the real tiny VLA, run under ``torchrun --nproc_per_node=2`` (gloo) by
test_parallel_distributed.py.

One launch runs every check (process start-up dominates on 2 cores); rank 0 prints ``OK <name>``
per passed check. Each check compares a sharded model against a plain single-process VLA that every
rank builds itself on the *global* batch, so no second launch is needed for the reference.

Flow matching draws noise and times inside ``forward``. Every rank seeds the generator with the
step number before its forward; the reference runs the global batch as the same per-rank halves
(gradient accumulation, each half after the same seeding), so both see identical noise and the
only difference left is where the samples are computed.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "action_expert"))
from ae_helpers import make_batch, tiny_vla  # noqa: E402

from torchtitan_vla.config import JobConfig  # noqa: E402
from torchtitan_vla.models.vla import VLA  # noqa: E402
from torchtitan_vla.models.vla.hf_keys import load_vlm_hf, vlm_hf_state_dict  # noqa: E402
from torchtitan_vla.parallel import ParallelDims, clip_grad_norm_, global_counts, normalize_loss, parallelize_vla  # noqa: E402
from torchtitan_vla.parallel.weights import init_on_device  # noqa: E402
from torchtitan_vla.utils.distributed import init_distributed  # noqa: E402

GLOBAL_BATCH = 4
STEPS = 5
TERMS = {"text": ("text_loss_sum", "text_tokens"), "action": ("action_loss_sum", "action_elements")}


def log(msg: str) -> None:
    if dist.get_rank() == 0:
        print(msg, flush=True)


def job_config(replicate=1, shard=-1, ac="none", option="op") -> JobConfig:
    cfg = JobConfig()
    cfg.parallelism.data_parallel_replicate_degree = replicate
    cfg.parallelism.data_parallel_shard_degree = shard
    cfg.activation_checkpoint.mode = ac
    cfg.activation_checkpoint.selective_option = option
    return cfg


def split(batch: dict, part: int, parts: int) -> dict:
    """Samples ``part`` of ``parts`` of a Batch dict (position ids are (3, B, S), pixels are per patch)."""
    per = GLOBAL_BATCH // parts
    lo, hi = part * per, (part + 1) * per
    patches = batch["image_grid_thw"].prod(dim=1)
    p_lo, p_hi = int(patches[:lo].sum()), int(patches[:hi].sum())
    out = {k: v[lo:hi] for k, v in batch.items()}
    out["position_ids"] = batch["position_ids"][:, lo:hi]
    out["pixel_values"] = batch["pixel_values"][p_lo:p_hi]
    return out


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


def micro_step(model, micro_batches: list[dict], dp_mesh, seed: int) -> float:
    """Forward/backward of this rank's micro-batches, normalized by the global counts; returns the global loss."""
    outs = []
    for mb in micro_batches:
        torch.manual_seed(seed)
        outs.append(model(mb))
    local = {t: sum(o[c] for o in outs) for t, (_, c) in TERMS.items()}
    counts = global_counts(local, dp_mesh)
    total = torch.zeros(())
    for out in outs:
        loss = normalize_loss({t: out[s] for t, (s, _) in TERMS.items()}, counts)
        loss.backward()
        total += loss.detach()
    if dp_mesh is not None:
        dist.all_reduce(total, group=dp_mesh.get_group())
    return total.item()


def train(model, dims: ParallelDims | None, steps: int) -> tuple[list[float], torch.optim.Optimizer]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
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


def check_training_parity(reference: VLA, fusion: str) -> None:
    ref_losses, _ = train(copy.deepcopy(reference), None, STEPS)
    layouts = ((1, 2), (2, 1)) if fusion == "joint" else ((1, 2),)
    for replicate, shard in layouts:
        model, dims = sharded_copy(reference, job_config(replicate, shard))
        losses, _ = train(model, dims, STEPS)
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-4, atol=0)
        log(f"OK parity {fusion} fusion, replicate={replicate} x shard={shard}, {STEPS} steps: "
            f"{[round(x, 5) for x in losses]} (1 process: {[round(x, 5) for x in ref_losses]})")


def full_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad for n, p in model.named_parameters()}


def check_ac_gradients(reference: VLA) -> None:
    grads = {}
    for ac, option in (("none", "op"), ("full", "op"), ("selective", "op"), ("selective", "2")):
        model, dims = sharded_copy(reference, job_config(ac=ac, option=option))
        batch = split(make_batch(model, batch_size=GLOBAL_BATCH, seed=7), dims.dp_rank, dims.dp_world_size)
        micro_step(model, [batch], dims.dp_mesh, seed=0)
        grads[(ac, option)] = full_grads(model)
    for key, got in grads.items():
        for name, g in got.items():
            torch.testing.assert_close(g, grads[("none", "op")][name], rtol=1e-5, atol=1e-7, msg=f"{key} {name}")
    log("OK activation checkpointing (full, selective op, selective every 2nd) gives the same gradients as none")


def check_memory_share(reference: VLA) -> None:
    model, dims = sharded_copy(reference, job_config())
    _, opt = train(model, dims, 1)
    total = sum(p.numel() for p in model.parameters())
    local = sum(p.to_local().numel() for p in model.parameters())
    state = sum(v.to_local().numel() for s in opt.state.values() for v in s.values() if isinstance(v, DTensor))
    shares = [torch.zeros(2, dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(shares, torch.tensor([local, state], dtype=torch.float64))
    for share in shares:
        assert abs(share[0].item() / total - 0.5) < 0.01, (share, total)
        assert abs(share[1].item() / (2 * total) - 0.5) < 0.01, (share, total)  # exp_avg + exp_avg_sq
    log(f"OK each rank holds ~1/2 (measured from local shards): params {[int(s[0]) for s in shares]} of {total}, "
        f"optimizer state {[int(s[1]) for s in shares]} of {2 * total}")


def check_frozen_vision(reference: VLA) -> None:
    model, dims = sharded_copy(reference, job_config())
    model.set_trainable(["decoder", "expert"])
    vision = model.components()["vision"]
    before = {n: p.full_tensor().clone() for n, p in vision.named_parameters()}
    _, opt = train(model, dims, 2)
    for n, p in vision.named_parameters():
        assert isinstance(p, DTensor), f"frozen vision parameter {n} is not sharded"
        assert torch.equal(p.full_tensor(), before[n]), f"frozen vision parameter {n} changed"
        assert p not in opt.state and p.grad is None, f"frozen vision parameter {n} has optimizer state or grad"
    assert all(p in opt.state for p in model.parameters() if p.requires_grad)
    log("OK a frozen vision encoder is sharded, never changes and has no optimizer state")


def check_grad_norm_mixed_meshes() -> None:
    """Gradients on a 1-D mesh, a 2-D mesh (sharded and replicated dims), plain tensors and a frozen one."""
    world = dist.get_world_size()
    mesh1 = ParallelDims(1, world, 1, world).mesh["dp_shard"]
    mesh2 = ParallelDims(world, 1, 1, world).mesh["dp_replicate", "dp_shard"]
    torch.manual_seed(0)
    fulls = [torch.randn(6, 3), torch.randn(5), torch.randn(4, 2), torch.randn(3)]
    layouts = [(mesh1, [Shard(0)]), (mesh2, [Replicate(), Shard(0)]), (mesh2, [Shard(0), Replicate()]), None]
    params = []
    for full, layout in zip(fulls, layouts):
        zeros = torch.zeros_like(full)
        p = torch.nn.Parameter(zeros if layout is None else distribute_tensor(zeros, *layout))
        p.grad = full.clone() if layout is None else distribute_tensor(full.clone(), *layout)
        params.append(p)
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    expected = torch.linalg.vector_norm(torch.cat([f.flatten() for f in fulls]))
    norm = clip_grad_norm_([*params, frozen], max_norm=0.5)
    torch.testing.assert_close(norm, expected)
    for full, p in zip(fulls, params):
        g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        torch.testing.assert_close(g, full * 0.5 / (expected + 1e-6))
    log(f"OK global grad norm over mixed meshes = {norm.item():.5f} (unsharded {expected.item():.5f})")


def lm_head_logits(model: VLA, batch: dict) -> torch.Tensor:
    """The logits the text loss sees (at labelled positions), captured from the LM head."""
    captured = []
    handle = model.vlm.lm_head.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    with torch.no_grad():
        torch.manual_seed(0)
        model(batch)
    handle.remove()
    return captured[0]


def check_hf_loading(reference: VLA) -> None:
    """Rank 0 writes the reference's VLM as an HF checkpoint; a sharded model loads it (each rank reads
    its own rows) and must give the unsharded reference's logits."""
    folder = [tempfile.mkdtemp(prefix="hf_vlm_") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(folder)
    if dist.get_rank() == 0:
        save_file(vlm_hf_state_dict(reference), f"{folder[0]}/model.safetensors")
    dist.barrier()
    batch = make_batch(reference, batch_size=GLOBAL_BATCH, seed=11)
    expected = lm_head_logits(reference, batch)
    cfg = job_config()
    dims = ParallelDims.from_config(cfg.parallelism)
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, reference.expert_cfg)
    parallelize_vla(model, dims, cfg)
    torch.manual_seed(123)  # fresh weights that differ from the reference's
    init_on_device(model, torch.device("cpu"))
    load_vlm_hf(model, folder[0])
    got = lm_head_logits(model, batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    log(f"OK sharded HF loading (per-rank slices) gives the unsharded logits, max |diff| {(got - expected).abs().max():.2e}")


def main() -> None:
    init_distributed()
    joint = tiny_vla()
    checks = sys.argv[1:] or ["parity", "late", "ac", "memory", "frozen", "grad_norm", "hf"]
    for name in checks:
        {
            "parity": lambda: check_training_parity(joint, "joint"),
            "late": lambda: check_training_parity(tiny_vla(fusion="late", num_layers=2), "late"),
            "ac": lambda: check_ac_gradients(joint),
            "memory": lambda: check_memory_share(joint),
            "frozen": lambda: check_frozen_vision(joint),
            "grad_norm": check_grad_norm_mixed_meshes,
            "hf": lambda: check_hf_loading(joint),
        }[name]()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
