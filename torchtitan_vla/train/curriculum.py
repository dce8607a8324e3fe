"""The curriculum engine's bookkeeping: which stages this job runs, their global step ranges,
where a checkpoint resumes, and how each stage's randomness is seeded."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from torchtitan_vla.config import ConfigError, ResolvedStage


@dataclass
class StagePlan:
    stage: ResolvedStage
    offset: int
    """Global step reached before this stage starts (sum of the earlier stages' steps)."""

    @property
    def end(self) -> int:
        return self.offset + self.stage.steps


def plan_stages(stages: list[ResolvedStage], only_stage: str = "", skip_stages: list[str] = ()) -> list[StagePlan]:
    """The stages this job runs, in order. Global step numbers are those of the full curriculum,
    so a stage run alone (or after skipped ones) logs and checkpoints the same step numbers as inside
    the whole job."""
    plans, offset = [], 0
    for stage in stages:
        if stage.name not in skip_stages:
            plans.append(StagePlan(stage, offset))
        offset += stage.steps
    if only_stage:
        plans = [p for p in plans if p.stage.name == only_stage]
        if not plans:
            raise ConfigError(
                f"curriculum.only_stage '{only_stage}' is not a stage (stages: {[s.name for s in stages]})"
            )
    return plans


def resume_index(plans: list[StagePlan], meta: dict, path: str) -> int:
    """Index into ``plans`` of the stage a checkpoint belongs to (it must be one this job runs)."""
    for i, plan in enumerate(plans):
        if plan.stage.name == meta.get("stage"):
            if plan.stage.index != meta.get("stage_index"):
                raise ConfigError(
                    f"checkpoint {path} was written in stage '{meta.get('stage')}' at position "
                    f"{meta.get('stage_index')}, but that stage is now at position {plan.stage.index}"
                )
            return i
    raise ConfigError(
        f"checkpoint {path} belongs to stage '{meta.get('stage')}', which this job does not run "
        f"(stages: {[p.stage.name for p in plans]}); use another run folder or checkpoint.load_step"
    )


def check_components_cover(model: nn.Module, components: dict[str, nn.Module]) -> None:
    """Every parameter must belong to a component, or freezing and LR groups would miss it."""
    covered = {id(p) for m in components.values() for p in m.parameters()}
    orphans = [n for n, p in model.named_parameters() if id(p) not in covered]
    if orphans:
        raise ValueError(f"model.components() misses {len(orphans)} parameters, e.g. {orphans[:5]}")


def seed_stage(base_seed: int, stage_index: int, rank: int) -> None:
    """Reseed every RNG at a stage start: a stage then runs the same whether the job started with it
    (curriculum.only_stage) or reached it from the previous stage. Ranks draw different noise."""
    seed = base_seed + 1_000 * (stage_index + 1) + rank
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
