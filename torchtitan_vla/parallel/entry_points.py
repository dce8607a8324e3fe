"""Blocks that are entered through more than ``forward``.

The joint layer has one method per use (``forward``, ``forward_joint``, ``forward_cached``) and the model
calls the last two directly, not through ``__call__``. Module hooks and ``Module.compile`` only see
``forward``, so activation checkpointing, compilation and FSDP's gather/reshard hooks are applied to every
method a block lists in its ``forward_methods`` attribute.
"""

from __future__ import annotations

from torch import nn


def entry_points(block: nn.Module) -> tuple[str, ...]:
    """The names of the methods through which ``block`` runs (``("forward",)`` unless it lists more)."""
    return tuple(getattr(block, "forward_methods", ("forward",)))
