"""Per-block ``torch.compile`` (after activation checkpointing, before FSDP)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from torchtitan_vla.config.parallel import Compile


def apply_compile(blocks: Sequence[nn.Module], cfg: Compile) -> int:
    """Compile each block in place; returns how many were compiled.

    ``Module.compile`` keeps the parameter names (no ``_orig_mod`` prefix). Compiling blocks rather
    than the whole model keeps graphs small and identical across layers (one compilation reused),
    and leaves FSDP's all-gathers between the graphs where they overlap with compute.
    """
    if not cfg.enable:
        return 0
    for block in blocks:
        block.compile(backend=cfg.backend, fullgraph=True)
    return len(blocks)
