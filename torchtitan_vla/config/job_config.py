"""The root configuration: one attribute per TOML section.

Stage-level sections (``STAGE_SECTIONS``) hold what a curriculum stage may change: the data it reads,
its optimizer, schedule and training-time knobs (passed to the model's forward). Every other section is
job-level: built once for the whole job (the model, its parallelization, checkpointing, metrics), so a
stage table of one is refused at load rather than printed and then ignored.
"""

import typing
from dataclasses import dataclass, field
from typing import Literal

from .checkpoint import Checkpoint
from .curriculum import Curriculum, Eval
from .data import Data
from .debug import Debug
from .fault_tolerance import FaultTolerance
from .float8 import Float8
from .job import Job
from .metrics import Metrics
from .model import ActionExpert, Model
from .parallel import ActivationCheckpoint, Compile, Parallelism
from .training import LRSchedule, Optimizer, Training


@dataclass
class JobConfig:
    job: Job = field(default_factory=Job)
    """Run naming, output folder, seeding, logging."""

    model: Model = field(default_factory=Model)
    """The Qwen3-VL prior: flavor, weights, tokenizer, attention backend, LoRA."""

    action_expert: ActionExpert = field(default_factory=ActionExpert)
    """The flow-matching Action Expert and how it is fused with the VLM."""

    data: Data = field(default_factory=Data)
    """Data sources, mixture weights and batching."""

    optimizer: Optimizer = field(default_factory=Optimizer)
    """AdamW and its per-component learning rates and weight decay."""

    lr_schedule: LRSchedule = field(default_factory=LRSchedule)
    """Learning-rate schedule, applied per stage."""

    training: Training = field(default_factory=Training)
    """Steps, batch sizes, loss weights, flow-time distribution, knowledge insulation, trainable parts,
    precision, guards."""

    parallelism: Parallelism = field(default_factory=Parallelism)
    """Device mesh and FSDP/HSDP settings."""

    activation_checkpoint: ActivationCheckpoint = field(default_factory=ActivationCheckpoint)
    """Activation checkpointing per component."""

    compile: Compile = field(default_factory=Compile)
    """Per-block torch.compile."""

    float8: Float8 = field(default_factory=Float8)
    """Float8 linear layers through torchao."""

    fault_tolerance: FaultTolerance = field(default_factory=FaultTolerance)
    """torchft replica groups: training goes on when one dies, a restarted one rejoins."""

    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    """DCP checkpoints, resumption and export."""

    metrics: Metrics = field(default_factory=Metrics)
    """Console, metrics.jsonl, TensorBoard and wandb."""

    curriculum: Curriculum = field(default_factory=Curriculum)
    """The stages of the curriculum."""

    eval: Eval = field(default_factory=Eval)
    """Closed-loop evaluation of the final policy."""

    debug: Debug = field(default_factory=Debug)
    """Fault injection for tests of the trainer's guards."""


StageSection = Literal["data", "optimizer", "lr_schedule", "training"]
STAGE_SECTIONS: tuple[str, ...] = typing.get_args(StageSection)
"""The sections a ``[[curriculum.stages]]`` entry may override; the others are job-level."""
