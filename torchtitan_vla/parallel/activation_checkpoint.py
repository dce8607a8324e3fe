"""Activation checkpointing of transformer blocks: none, full, selective per-op, every N-th block.

Checkpointing is applied in place by rebinding the block's ``forward``: parameter names stay the
same (no ``_checkpoint_wrapped_module`` in state-dict keys, so HF loading, optimizer groups and DCP
see the plain FQNs), and FSDP's hooks, registered later on the module, stay outside the recomputed
region exactly as with torchtitan's ``fully_shard(checkpoint_wrapper(block))``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from torchtitan_vla.config.parallel import ActivationCheckpoint

from .entry_points import entry_points

_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}

# Outputs worth keeping in selective per-op mode: they are the expensive ones to recompute.
_SAVE_OPS = {
    *_MATMULS,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_attention_math.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
}


def _op_policy(counts: dict[str, int]):
    """Save attention and every other matmul output; recompute everything else.

    Recomputing every second matmul (torchtitan's recipe) halves the saved matmul outputs for the
    price of a few cheap recomputations. The counter is per mode so the recompute pass makes the
    same choice as the forward pass for the same op.
    """

    def policy(ctx, func, *args, **kwargs):
        mode = "recompute" if ctx.is_recompute else "forward"
        if func in _MATMULS:
            counts[mode] += 1
            if counts[mode] % 2 == 0:
                return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if func in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def _selective_op_contexts():
    return create_selective_checkpoint_contexts(_op_policy(defaultdict(int)))


def checkpoint_module(module: nn.Module, context_fn: Callable | None = None) -> None:
    """Recompute ``module``'s activations in backward instead of storing them (in place, for every entry
    point of the block)."""
    kwargs = {"context_fn": context_fn} if context_fn is not None else {}
    for name in entry_points(module):
        setattr(module, name, _checkpointed(getattr(module, name), kwargs))


def _checkpointed(inner: Callable, kwargs: dict) -> Callable:
    @functools.wraps(inner)
    def run(*args, **fwd_kwargs):
        return checkpoint(inner, *args, use_reentrant=False, preserve_rng_state=True, **kwargs, **fwd_kwargs)

    return run


def apply_ac(blocks: Sequence[nn.Module], cfg: ActivationCheckpoint) -> int:
    """Checkpoint ``blocks`` as ``cfg`` says; returns how many blocks were checkpointed.

    ``full``: every block. ``selective`` + ``op``: every block, saving matmul/attention outputs.
    ``selective`` + ``N``: blocks N, 2N, ... (1-based) fully, the others not at all.
    """
    if cfg.mode == "none":
        return 0
    every, context_fn = 1, None
    if cfg.mode == "selective" and cfg.selective_option == "op":
        context_fn = _selective_op_contexts
    elif cfg.mode == "selective":
        every = cfg.selective_option
    chosen = list(blocks)[every - 1 :: every]
    for block in chosen:
        checkpoint_module(block, context_fn)
    return len(chosen)
