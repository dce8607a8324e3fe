"""Value constraints declared next to the fields, and the names the configuration refers to.

A field carries its constraint in its type, ``Annotated[int, Range(min=1)]``: the loader checks it for
TOML and command-line values alike, and ``scripts/gen_config_docs.py`` prints it in
docs/configuration.md, so the rule, its check and its documentation are one declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

Component = Literal["vision", "decoder", "expert"]
"""The trainable parts of the VLA: the vision encoder, the language decoder, the Action Expert."""

LoRAComponent = Literal["decoder", "expert"]
"""Components whose linears can carry LoRA adapters."""


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``min``/``max`` bounds (exclusive when ``*_open``), an optional step, and
    sentinel values accepted outside the range (``also``, e.g. -1 for "derive it")."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    multiple_of: int | None = None
    also: tuple[int, ...] = ()

    def allows(self, value: float) -> bool:
        if value in self.also:
            return True
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            return False
        if self.max is not None and (value > self.max or (self.max_open and value == self.max)):
            return False
        return self.multiple_of is None or value % self.multiple_of == 0

    def describe(self) -> str:
        """The rule as a user reads it: ``>= 1``, ``in [0, 1)``, ``-1 or >= 1``, ``>= 32, multiple of 32``."""
        if self.min is not None and self.max is not None:
            rule = f"in {'(' if self.min_open else '['}{self.min:g}, {self.max:g}{')' if self.max_open else ']'}"
        elif self.min is not None:
            rule = f"{'>' if self.min_open else '>='} {self.min:g}"
        elif self.max is not None:
            rule = f"{'<' if self.max_open else '<='} {self.max:g}"
        else:
            rule = "any"
        if self.multiple_of is not None:
            rule += f", multiple of {self.multiple_of}"
        if self.also:
            rule = " or ".join(str(v) for v in self.also) + " or " + rule
        return rule


PositiveInt = Annotated[int, Range(min=1)]
NonNegativeInt = Annotated[int, Range(min=0)]
NonNegativeFloat = Annotated[float, Range(min=0)]
PositiveFloat = Annotated[float, Range(min=0, min_open=True)]
UnitInterval = Annotated[float, Range(min=0, max=1)]
"""A fraction in [0, 1]."""
Decay = Annotated[float, Range(min=0, max=1, max_open=True)]
"""A decay rate in [0, 1) (Adam betas, EMA)."""
DeriveOrPositiveInt = Annotated[int, Range(min=1, also=(-1,))]
"""-1 (derived from other settings) or a positive count."""
