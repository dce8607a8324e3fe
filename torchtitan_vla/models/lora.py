"""LoRA adapters for ``nn.Linear`` layers: inject, count, and merge back for export.

A wrapped linear keeps its own ``weight``/``bias`` parameters under the same names (so checkpoints of
the base model load unchanged) and gains ``lora_a``/``lora_b``; the adapter adds
``(alpha / rank) * B(A(x))`` to the frozen base output. ``lora_b`` starts at zero, so injecting adapters
changes no output until they train.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def merged_weight(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``W + scaling * B @ A`` in float32, returned in ``W``'s dtype."""
    return (weight.float() + (lora_b.float() @ lora_a.float()) * scaling).to(weight.dtype)


class LoRALinear(nn.Linear):
    """``nn.Linear`` plus a low-rank update; built from an existing linear by ``from_linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool, rank: int, alpha: float, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_a = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.lora_b = nn.Linear(rank, out_features, bias=False, device=device, dtype=dtype)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float) -> LoRALinear:
        weight = linear.weight
        lora = cls(linear.in_features, linear.out_features, linear.bias is not None, rank, alpha,
                   device=weight.device, dtype=weight.dtype)
        # Share the base parameters themselves: no copy, and on the meta device nothing to copy.
        lora.weight = linear.weight
        lora.bias = linear.bias
        lora.weight.requires_grad_(False)
        if lora.bias is not None:
            lora.bias.requires_grad_(False)
        if not weight.is_meta:
            lora.init_lora()
        return lora

    def init_lora(self) -> None:
        """A like a fresh linear (Kaiming uniform), B zero: the adapter starts as a no-op."""
        nn.init.kaiming_uniform_(self.lora_a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.lora_b(self.lora_a(x)) * self.scaling

    def merged_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``W + scaling * B @ A`` (for export)."""
        merged = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            merged.weight.copy_(merged_weight(self.weight, self.lora_a.weight, self.lora_b.weight, self.scaling))
            if self.bias is not None:
                merged.bias.copy_(self.bias)
        return merged

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}"


def apply_lora(module: nn.Module, rank: int, alpha: float, targets: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """Wrap every ``nn.Linear`` under ``module`` whose own name is in ``targets``; return their FQNs.

    Children named in ``skip`` are not entered (a joint layer's ``expert`` half is a separate component).
    The base weights of wrapped linears are frozen. Raises ValueError when no linear matches, since a
    misspelt target would otherwise silently train nothing.
    """
    wrapped = []

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent.named_children()):
            name = f"{prefix}{child_name}"
            if child_name in targets and type(child) is nn.Linear:
                setattr(parent, child_name, LoRALinear.from_linear(child, rank, alpha))
                wrapped.append(name)
            elif child_name not in skip:
                visit(child, f"{name}.")

    visit(module, "")
    if not wrapped:
        raise ValueError(f"lora_targets {targets} match no nn.Linear in {type(module).__name__}")
    return wrapped


def merge_lora(module: nn.Module) -> int:
    """Replace every ``LoRALinear`` under ``module`` by its merged ``nn.Linear``; return how many."""
    count = 0
    for parent in list(module.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged_linear())
                count += 1
    return count


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter FQN belongs to a LoRA adapter."""
    return ".lora_a." in name or ".lora_b." in name or name.startswith(("lora_a.", "lora_b."))
