"""The curriculum: stages run in order in one job, each a set of overrides of the stage-level sections."""

from dataclasses import dataclass, field
from typing import Any

from .constraints import NonNegativeInt, PositiveInt


@dataclass
class Stage:
    name: str = ""
    """Unique stage name (used in logs, checkpoints and ``curriculum.only_stage``)."""

    steps: PositiveInt = 1
    """Optimizer steps of this stage."""

    description: str = ""
    """Free text shown in ``--print-config``."""

    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-section overrides of the stage-level sections (data, optimizer, lr_schedule, training). In TOML
    these are sub-tables of the stage, e.g. ``[curriculum.stages.training]`` after ``[[curriculum.stages]]``;
    each is validated like its section."""


@dataclass
class Curriculum:
    name: str = ""
    """Name of the curriculum; the wandb group. Empty: ``job.name``."""

    stages: list[Stage] = field(default_factory=list)
    """The stages, in order. Empty: one stage named ``train`` with ``training.steps`` steps."""

    only_stage: str = ""
    """Run just this stage (initialised from ``checkpoint.initial_load_path`` when given)."""

    skip_stages: list[str] = field(default_factory=list)
    """Stages to leave out, for ablations (``--curriculum.skip_stages=vlm_pretrain``: the later stages start
    from the model's initialisation instead). Global step numbers stay those of the full curriculum."""


@dataclass
class Eval:
    closed_loop_episodes: NonNegativeInt = 0
    """Closed-loop evaluation episodes of the toy world run on the final policy; 0 skips the evaluation.
    Meta-World policies are evaluated by their own command (datasets/metaworld/README.md)."""

    max_episode_steps: PositiveInt = 40
    """Simulator steps per evaluation episode (the toy world scores where the agent is after the last one)."""

    seed: NonNegativeInt = 1234
    """Seed of the evaluation episodes (held out from the training episodes' seeds)."""

    execute_steps: PositiveInt = 4
    """Actions of each predicted chunk executed before the policy is asked again (receding horizon); at
    most ``action_expert.action_horizon``."""

    toyworld_data: str = ""
    """Folder of the generated toy-world data the policy was trained on: the evaluation draws its held-out
    tables from the same world (its ``toyworld.json``); it must exist when set and the evaluation is on.
    Empty: the default ``WorldConfig``."""

    baselines: bool = True
    """Also score, on the same episodes, a scripted policy going to a random shape (chance level) and the
    trained policy with its instruction removed."""
