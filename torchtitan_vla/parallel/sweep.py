"""The memory / step-time sweep over parallelism settings, for ``scripts/bench_train.py``.

Each sweep point is a set of ``--section.key=value`` overrides on top of the benchmarked config;
``measure_steps`` times a training step and reads the peak device memory (CUDA) or the peak resident
set size (CPU, where it only shows relative differences).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch

SWEEP: dict[str, dict[str, str]] = {
    "fsdp": {"activation_checkpoint.mode": "none"},
    "fsdp+ac_full": {"activation_checkpoint.mode": "full"},
    "fsdp+ac_op": {"activation_checkpoint.mode": "selective", "activation_checkpoint.selective_option": "op"},
    "fsdp+ac_every2": {"activation_checkpoint.mode": "selective", "activation_checkpoint.selective_option": "2"},
    "fsdp+ac_full+no_reshard": {
        "activation_checkpoint.mode": "full",
        "parallelism.fsdp_reshard_after_forward": "never",
    },
    "fsdp+ac_full+vision_per_block": {"activation_checkpoint.mode": "full", "parallelism.vision_fsdp_unit": "block"},
    "fsdp+ac_op+compile": {
        "activation_checkpoint.mode": "selective",
        "activation_checkpoint.selective_option": "op",
        "compile.enable": "true",
    },
}
"""Named override sets; HSDP points are added by ``sweep_points`` when the world allows them."""


def sweep_points(world_size: int) -> dict[str, dict[str, str]]:
    """``SWEEP`` plus, on more than 2 ranks, the same full-AC point as HSDP with 2 replicas."""
    points = dict(SWEEP)
    if world_size > 2 and world_size % 2 == 0:
        points["hsdp2+ac_full"] = {
            "activation_checkpoint.mode": "full",
            "parallelism.data_parallel_replicate_degree": "2",
        }
    return points


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure_steps(step: Callable[[], None], device: torch.device, steps: int = 10, warmup: int = 3) -> dict[str, float]:
    """Run ``step`` ``warmup`` times untimed (compilation, allocator warm-up), then ``steps`` times.

    Returns ``step_time_s`` (mean), ``peak_memory_gib`` (CUDA: max allocated during the timed steps).
    """
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"step_time_s": (time.perf_counter() - start) / steps, "peak_memory_gib": _peak_memory_gib(device)}
