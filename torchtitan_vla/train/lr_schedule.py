"""Learning-rate schedules, one per curriculum stage, as a multiplier of each group's peak LR.

The multiplier is a pure function of the stage's step, so the schedule's checkpointed state is just
that step, and a step past the end of the stage keeps the final value (never a negative LR).
"""

from __future__ import annotations

import math

import torch

from torchtitan_vla.config.training import LRSchedule


def lr_multiplier(cfg: LRSchedule, step: int, total_steps: int) -> float:
    """LR factor for optimizer step ``step`` (1-based) of a stage with ``total_steps`` steps."""
    warmup = min(cfg.warmup_steps, total_steps)
    if step <= warmup:
        # Step 1 already trains, so warmup ends at the peak rather than starting from exactly 0.
        return step / (warmup + 1)
    if cfg.kind == "constant":
        return 1.0
    floor = cfg.min_lr_ratio
    decay_steps = total_steps - warmup
    if cfg.kind == "wsd":
        decay_steps = max(1, round(cfg.decay_ratio * (total_steps - warmup)))
        decay_start = total_steps - decay_steps
        if step <= decay_start:
            return 1.0
        progress = (step - decay_start) / decay_steps
    else:
        progress = (step - warmup) / max(1, decay_steps)
    progress = min(1.0, progress)
    if cfg.kind == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * (1.0 - progress)  # linear, and WSD's final linear decay


class StageLRScheduler:
    """Sets ``lr = peak_lr * multiplier(step)`` on every parameter group (each keeps its own peak)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: LRSchedule, total_steps: int):
        self.optimizer = optimizer
        self.cfg = cfg
        self.total_steps = total_steps
        self.step_count = 0
        self.apply()

    def apply(self) -> None:
        """Set the LR of the next optimizer step on every group."""
        factor = lr_multiplier(self.cfg, self.step_count + 1, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor

    def step(self) -> None:
        """Advance to the next optimizer step (call after ``optimizer.step()``)."""
        self.step_count += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.apply()
