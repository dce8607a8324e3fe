"""The curriculum resolved: one complete ``JobConfig`` per stage.

A stage's config is the base with the stage's overrides of the stage-level sections (TOML, then the
command line) applied; its job-level sections are the base's, because the objects they describe (model,
mesh, checkpointer, ...) are built once for the whole job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .coercion import build_dataclass
from .curriculum import Stage
from .job_config import JobConfig
from .loader import LoadedConfig, config_to_dict, merge


@dataclass
class ResolvedStage:
    """One stage as the trainer sees it: a complete configuration."""

    index: int
    name: str
    steps: int
    description: str
    config: JobConfig


def resolve_stages(loaded: LoadedConfig) -> list[ResolvedStage]:
    """Every stage as a complete configuration: base < stage TOML overrides < stage command line.

    Without stages the job is one stage named ``train`` with ``training.steps`` steps. Stage tables were
    limited to stage-level sections when the configuration loaded.
    """
    cfg = loaded.config
    base = config_to_dict(cfg)
    base["curriculum"]["stages"] = []
    stages = cfg.curriculum.stages or [Stage(name="train", steps=cfg.training.steps)]
    resolved = []
    for index, stage in enumerate(stages):
        per_stage = copy.deepcopy(loaded.cli.per_stage.get(stage.name, {}))
        steps = per_stage.pop("steps", stage.steps)
        description = per_stage.pop("description", stage.description)
        # The base already holds the command line's global overrides; they beat a stage's TOML too.
        merged = merge(merge(merge(base, stage.overrides), loaded.cli.base), per_stage)
        merged["training"]["steps"] = steps
        stage_cfg = build_dataclass(JobConfig, merged, "", f"{loaded.source} (stage '{stage.name}')")
        resolved.append(ResolvedStage(index, stage.name, steps, description, stage_cfg))
    return resolved
