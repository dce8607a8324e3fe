"""Data-parallel ranks whose micro-batches leave a component idle, under ``torchrun --nproc_per_node=2``
(gloo), run by test_idle_components.py.

Rank 0 gets a text-only web document (no image, no actions: neither the vision encoder nor the expert
has work), rank 1 a robot sample with an image. With ``parallelize_vla``'s ``run_idle_components`` both ranks
run every FSDP unit, so the step completes, and the losses equal one process running the two
micro-batches (where the idle components are simply skipped). Rank 0 prints ``OK <name>`` per check.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "action_expert"))
from ae_helpers import make_batch, tiny_vla  # noqa: E402
from dist_checks import job_config, log, micro_step, sharded_copy  # noqa: E402

from torchtitan_vla.parallel import clip_grad_norm_  # noqa: E402
from torchtitan_vla.utils.distributed import init_distributed  # noqa: E402

STEPS = 2


def text_only_batch(vla, length: int = 12, seed: int = 0) -> dict:
    """One web document without images: text loss only, robot keys zeroed (the data contract)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = vla.expert_cfg
    input_ids = torch.randint(0, 900, (1, length), generator=gen)
    labels = torch.full_like(input_ids, -100)
    labels[:, :-1] = input_ids[:, 1:]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": torch.ones_like(input_ids, dtype=torch.bool),
        "position_ids": torch.arange(length).expand(3, 1, length),
        "doc_ids": torch.zeros_like(input_ids),
        "pixel_values": None,
        "image_grid_thw": None,
        "state": torch.zeros(1, cfg.max_state_dim),
        "actions": torch.zeros(1, cfg.action_horizon, cfg.max_action_dim),
        "action_is_pad": torch.ones(1, cfg.action_horizon, dtype=torch.bool),
        "action_dim_mask": torch.zeros(1, cfg.max_action_dim, dtype=torch.bool),
        "has_actions": torch.zeros(1, dtype=torch.bool),
        "source_id": torch.zeros(1, dtype=torch.long),
    }


def train(model, micro_batches_per_step, dp_mesh) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
    losses = []
    for step, micro_batches in enumerate(micro_batches_per_step):
        losses.append(micro_step(model, micro_batches, dp_mesh, seed=step))
        clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        opt.zero_grad()
    return losses


def check_idle_components(reference) -> None:
    rank = dist.get_rank()
    per_step = [[text_only_batch(reference, seed=step), make_batch(reference, batch_size=1, padding=(0,),
                                                                  action_dims=(3,), seed=10 + step)]
                for step in range(STEPS)]
    # One process, both micro-batches in turn; the web one skips the vision encoder and the expert.
    ref_losses = train(copy.deepcopy(reference), per_step, None)
    model, dims = sharded_copy(reference, job_config(shard=2))
    # parallelize_vla itself makes every rank run every unit (without it this run deadlocks).
    assert not model.skip_idle_expert and not model.vlm.skip_idle_vision
    losses = train(model, [[batches[rank]] for batches in per_step], dims.dp_mesh)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-5, atol=0)
    log(f"OK text-only web rank + robot image rank, {STEPS} FSDP steps: {[round(x, 6) for x in losses]} "
        f"(1 process: {[round(x, 6) for x in ref_losses]})")


def main() -> None:
    init_distributed()
    check_idle_components(tiny_vla())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
