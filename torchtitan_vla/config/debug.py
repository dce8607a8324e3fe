"""Fault injection for the tests of the trainer's guards; empty in real runs."""

from dataclasses import dataclass, field

from .constraints import NonNegativeInt, PositiveInt


@dataclass
class Debug:
    inject_nonfinite_steps: list[PositiveInt] = field(default_factory=list)
    """At these (curriculum-global) steps the loss is multiplied by NaN, to exercise the non-finite guard."""

    sigkill_at_step: NonNegativeInt = 0
    """Rank 0 sends itself SIGKILL when this step begins (a crash without a chance to save), to exercise
    resumption. 0 disables it."""
