"""Run-level settings: naming, output folder, seeding, logging."""

from dataclasses import dataclass

from .constraints import NonNegativeInt


@dataclass
class Job:
    name: str = "torchtitan_vla"
    """Run name. The run folder is ``<dump_folder>/<name>``; wandb and TensorBoard use it too."""

    description: str = ""
    """Free text shown in ``--print-config`` and logged with the resolved configuration."""

    dump_folder: str = "./outputs"
    """Root folder of all runs. Checkpoints, metrics.jsonl, TensorBoard and wandb files go below it."""

    seed: NonNegativeInt = 0
    """Seed for model initialisation, flow-matching noise and data order (offset per rank where needed)."""

    deterministic: bool = False
    """Ask PyTorch for deterministic kernels (slower on GPU); CPU runs are deterministic already."""

    log_all_ranks: bool = False
    """Print log lines from every rank (prefixed with the rank) instead of rank 0 only."""
