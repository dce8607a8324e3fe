"""``metrics.profile_steps``: a torch.profiler Chrome trace of chosen steps, one file per rank."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from torchtitan_vla.utils.logging import logger


def maybe_profile(step: int, profile_steps: list[int], folder: Path, rank: int) -> AbstractContextManager:
    """A profiler around ``step`` when it is listed, else a no-op context."""
    if step not in profile_steps:
        return nullcontext()
    return StepProfiler(folder / f"step-{step}-rank{rank}.json")


class StepProfiler:
    def __init__(self, path: Path):
        self.path = path
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities, record_shapes=True)

    def __enter__(self):
        self.profiler.__enter__()
        return self

    def __exit__(self, *exc):
        self.profiler.__exit__(*exc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.profiler.export_chrome_trace(str(self.path))
        logger.info(f"profiler trace written to {self.path}")
        return False
