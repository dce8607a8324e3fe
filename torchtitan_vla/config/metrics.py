"""What is logged, where, and how often."""

from dataclasses import dataclass, field

from .constraints import NonNegativeFloat, PositiveInt


@dataclass
class Metrics:
    log_freq: PositiveInt = 10
    """Log every this many steps (and at the first step of each stage)."""

    enable_tensorboard: bool = True
    """Write TensorBoard event files into ``<run folder>/tb``."""

    enable_wandb: bool = False
    """Log to wandb; offline (files only) when no API key is configured or WANDB_MODE=offline."""

    wandb_project: str = "torchtitan_vla"
    """wandb project."""

    wandb_entity: str = ""
    """wandb entity (team or user); empty: the default of the API key."""

    wandb_run_name: str = ""
    """wandb run name; empty: ``job.name``."""

    wandb_tags: list[str] = field(default_factory=list)
    """wandb tags."""

    save_jsonl: bool = True
    """Append one JSON object per log step to ``<run folder>/metrics.jsonl``."""

    profile_steps: list[PositiveInt] = field(default_factory=list)
    """Record a torch.profiler trace of these steps into ``<run folder>/profile``."""

    peak_flops: NonNegativeFloat = 0.0
    """Peak FLOP/s of one device used as the MFU denominator. 0: looked up from the GPU's name (bf16
    dense); on CPU MFU is then reported as n/a. Set it to state a nominal peak (e.g. for a CPU)."""
