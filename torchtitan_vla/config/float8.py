"""Float8 training through torchao (the optional ``float8`` extra)."""

from dataclasses import dataclass, field
from typing import Literal

from .constraints import Component

Float8Recipe = Literal["tensorwise", "rowwise", "rowwise_with_gw_hp", "mxfp8", "mxfp8_wgrad_with_hp"]


@dataclass
class Float8:
    enable: bool = False
    """Run the transformer blocks' linear layers of ``components`` in float8 (needs ``pip install
    '.[float8]'``). Norms, the MoE router, embeddings, the LM head, the vision mergers and the Action
    Expert's input/output heads stay in high precision. On CPU the float8 matmuls are emulated (same
    numerics, no speed-up)."""

    components: list[Component] = field(default_factory=lambda: ["decoder", "expert"])
    """Components whose block linears are converted."""

    recipe: Float8Recipe = "tensorwise"
    """torchao's scaling recipe: ``tensorwise`` (one scale per tensor, the fastest), ``rowwise`` (per
    row, e4m3 throughout), ``rowwise_with_gw_hp`` (rowwise, weight gradient in high precision), ``mxfp8``
    (32-element blocks with e8m0 scales; Blackwell GPUs, emulated elsewhere; the token count of every
    matmul must be a multiple of 32) or ``mxfp8_wgrad_with_hp``."""
