"""Per-block ``torch.compile`` (after activation checkpointing, before FSDP)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from torchtitan_vla.config.parallel import Compile

from .entry_points import entry_points


def apply_compile(blocks: Sequence[nn.Module], cfg: Compile) -> int:
    """Compile each block in place; returns how many were compiled.

    ``Module.compile`` keeps the parameter names (no ``_orig_mod`` prefix). Compiling blocks rather
    than the whole model keeps graphs small and identical across layers (one compilation reused),
    and leaves FSDP's all-gathers between the graphs where they overlap with compute. A block's other
    entry points (``forward_methods``) are compiled as bound methods.
    """
    if not cfg.enable:
        return 0
    for block in blocks:
        block.compile(backend=cfg.backend, fullgraph=True)
        for name in entry_points(block):
            if name != "forward":
                setattr(block, name, torch.compile(getattr(block, name), backend=cfg.backend, fullgraph=True))
    return len(blocks)
