"""Data-parallel ranks whose micro-batches leave a component idle, under ``torchrun --nproc_per_node=2``
(gloo), run by test_idle_components.py.

Rank 0 gets a text-only web document (no image, no actions: neither the vision encoder nor the expert
has work), rank 1 a robot sample with an image. With ``parallelize_vla``'s ``run_idle_components`` both ranks
run every FSDP unit, so the step completes, and the losses equal one process running the two
micro-batches (where the idle components are simply skipped). Rank 0 writes both loss trajectories to
the JSON file named by ``--out`` (under ``idle``).
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from tests.distributed_helper import run_checks
from tests.models.vla.helpers import make_batch, tiny_vla
from tests.parallel.dist_checks import job_config, micro_step, sharded_copy
from torchtitan_vla.data.batch import Batch
from torchtitan_vla.parallel import clip_grad_norm_

STEPS = 2


def text_only_batch(vla, length: int = 12, seed: int = 0) -> Batch:
    """One web document without images: text loss only, robot fields zeroed (as the collator makes them)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = vla.expert_cfg
    input_ids = torch.randint(0, 900, (1, length), generator=gen)
    labels = torch.full_like(input_ids, -100)
    labels[:, :-1] = input_ids[:, 1:]
    return Batch(
        input_ids=input_ids,
        labels=labels,
        attention_mask=torch.ones_like(input_ids, dtype=torch.bool),
        position_ids=torch.arange(length).expand(3, 1, length),
        doc_ids=torch.zeros_like(input_ids),
        state=torch.zeros(1, cfg.max_state_dim),
        actions=torch.zeros(1, cfg.action_horizon, cfg.max_action_dim),
        action_is_pad=torch.ones(1, cfg.action_horizon, dtype=torch.bool),
        action_dim_mask=torch.zeros(1, cfg.max_action_dim, dtype=torch.bool),
        has_actions=torch.zeros(1, dtype=torch.bool),
        source_id=torch.zeros(1, dtype=torch.long),
    )


def train(model, micro_batches_per_step, dp_mesh) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
    losses = []
    for step, micro_batches in enumerate(micro_batches_per_step):
        losses.append(micro_step(model, micro_batches, dp_mesh, step=step))
        clip_grad_norm_(model.parameters(), max_norm=1.0)
        opt.step()
        opt.zero_grad()
    return losses


def check_idle_components(reference) -> dict:
    rank = dist.get_rank()
    per_step = [[text_only_batch(reference, seed=step), make_batch(reference, batch_size=1, padding=(0,),
                                                                  action_dims=(3,), seed=10 + step)]
                for step in range(STEPS)]
    # One process, both micro-batches in turn; the web one skips the vision encoder and the expert.
    ref_losses = train(copy.deepcopy(reference), per_step, None)
    model, dims = sharded_copy(reference, job_config(shard=2))
    # parallelize_vla itself makes every rank run every unit (without it this run deadlocks).
    runs_idle = not model.skip_idle_expert and not model.vlm.skip_idle_vision
    losses = train(model, [[batches[rank]] for batches in per_step], dims.dp_mesh)
    return {"losses": losses, "reference": ref_losses, "runs_idle_components": runs_idle}


if __name__ == "__main__":
    run_checks(lambda: {"idle": lambda: check_idle_components(tiny_vla())})
