"""AdamW with one pair of parameter groups per model component (with and without weight decay)."""

from __future__ import annotations

import torch
from torch import nn

from torchtitan_vla.config.training import Optimizer as OptimizerConfig


def _no_decay_params(module: nn.Module) -> set[int]:
    """Ids of parameters exempt from weight decay: norms and biases (ndim <= 1) and embeddings."""
    exempt = {id(p) for p in module.parameters() if p.ndim <= 1}
    for sub in module.modules():
        if isinstance(sub, nn.Embedding):
            exempt.update(id(p) for p in sub.parameters())
    return exempt


def build_param_groups(components: dict[str, nn.Module], cfg: OptimizerConfig) -> list[dict]:
    """Groups ``<component>`` and ``<component>.no_decay`` of the trainable parameters.

    Each group carries ``name``, ``peak_lr`` (what the LR schedule scales) and ``weight_decay``.
    A parameter shared by two components (tied weights) belongs to the first one only.
    """
    seen: set[int] = set()
    groups = []
    for name, module in components.items():
        exempt = _no_decay_params(module)
        decay, no_decay = [], []
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if id(p) in exempt else decay).append(p)
        lr = cfg.component_lr.get(name, cfg.lr)
        wd = cfg.component_weight_decay.get(name, cfg.weight_decay)
        if decay:
            groups.append({"name": name, "params": decay, "peak_lr": lr, "lr": lr, "weight_decay": wd})
        if no_decay:
            groups.append(
                {"name": f"{name}.no_decay", "params": no_decay, "peak_lr": lr, "lr": lr, "weight_decay": 0.0}
            )
    return groups


def build_optimizer(components: dict[str, nn.Module], cfg: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``components`` (frozen ones get no optimizer state)."""
    groups = build_param_groups(components, cfg)
    if not groups:
        raise ValueError("training.trainable selects no parameter: nothing would train")
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        foreach=cfg.implementation == "foreach",
        fused=cfg.implementation == "fused",
    )
