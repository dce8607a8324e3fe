"""Validation: the loss on ``data.validation_mixture``, every ``training.validation_freq`` steps.

The validator owns its loader, built once per stage, and rewinds it before each run; the flow noise is
drawn from a fixed seed inside a forked RNG. So every validation of a stage sees the same samples and the
same noise (comparable numbers), and training's RNG streams are untouched (resume stays exact).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from torchtitan_vla.config import JobConfig
from torchtitan_vla.models.vla.options import ForwardOptions
from torchtitan_vla.utils.distributed import all_reduce_sum

from .forward_backward import forward_backward
from .loss import LOSS_TERMS, LossWeights, weighted_total

NOISE_SEED_OFFSET = 17
"""Validation noise seed = ``job.seed`` + this (any fixed value apart from the training seeds)."""


class Validator:
    def __init__(self, build_dataloader, cfg: JobConfig, tokenizer, dp_rank: int, dp_world_size: int,
                 device: torch.device, dp_mesh: DeviceMesh | None):
        held_out = copy.deepcopy(cfg)
        held_out.data.mixture = dict(cfg.data.validation_mixture)
        self.loader = build_dataloader(held_out, tokenizer, dp_rank, dp_world_size, "validation")
        self.start = self.loader.state_dict()
        self.steps = cfg.training.validation_steps
        self.seed = cfg.job.seed + NOISE_SEED_OFFSET
        self.device, self.dp_mesh = device, dp_mesh

    @torch.no_grad()
    def run(self, model: nn.Module, weights: LossWeights, options: ForwardOptions) -> dict[str, float]:
        """``{"val/loss": ..., "val/loss/<term>": ...}`` over ``training.validation_steps`` micro-batches."""
        self.loader.load_state_dict(self.start)
        sums = torch.zeros(len(LOSS_TERMS), dtype=torch.float64, device=self.device)
        counts = torch.zeros_like(sums)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            for _, batch in zip(range(self.steps), self.loader):
                losses = forward_backward(model, [batch.to(self.device)], weights=weights, options=options,
                                          dp_mesh=self.dp_mesh, backward=False)
                sums += losses.sums
                counts += losses.counts
        sums = all_reduce_sum(sums, self.dp_mesh)
        terms = {t: float(sums[i] / counts[i].clamp(min=1)) for i, t in enumerate(LOSS_TERMS)}
        record = {"val/loss": weighted_total(terms, weights)}
        record.update({f"val/loss/{t}": v for t, v in terms.items()})
        return record
