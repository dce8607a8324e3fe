"""Parallelism: the device mesh, one plan per component (AC -> compile -> FSDP2), sharded weight
loading, and the gradient-norm reduction that must see every rank."""

from .activation_checkpoint import apply_ac
from .compile import apply_compile
from .fsdp import disable_gradient_division, mixed_precision
from .grad_norm import clip_grad_norm_, total_grad_norm
from .parallel_dims import ParallelDims
from .parallelize import parallelize_vla

__all__ = [
    "ParallelDims",
    "apply_ac",
    "apply_compile",
    "clip_grad_norm_",
    "disable_gradient_division",
    "mixed_precision",
    "parallelize_vla",
    "total_grad_norm",
]
