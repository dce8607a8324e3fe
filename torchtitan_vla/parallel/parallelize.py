"""``parallelize_vla``: tensor parallelism first (``tensor_parallel.py``), then one plan per component,
each applying AC -> compile -> FSDP, the root last.

The model is reached only through ``model.components() -> {name: module}`` and
``model.blocks(name) -> [block, ...]``, so parallel/ holds no model math. Components:

* ``vision``: its blocks are checkpointed/compiled one by one; FSDP makes the whole encoder one unit
  (``parallelism.vision_fsdp_unit = "whole"``: its compute is small, one large all-gather beats
  dozens of small ones) or one unit per block (``"block"``).
* ``decoder``: ``tok_embeddings``, each layer, and ``[norm, lm_head]`` are units. With tied
  embeddings the embedding, final norm and head are one unit (a shared parameter must live in one
  FSDP unit).
* ``expert``: joint fusion returns the joint layers (decoder layer i + expert layer i as one module):
  the joint layer is the unit. Late fusion returns the expert's own blocks.

A block listed by several components (joint layers appear under ``decoder`` and ``expert``) is
handled once; it is checkpointed or compiled when any of its components is listed in the config.
Whatever no unit claims (vision/expert projections, position tables, time MLPs) joins the root unit,
which is gathered for the root's ``forward`` and ``sample_actions``. Frozen parameters are sharded
like the others; they get no gradient, and the optimizer, built over trainable parameters only,
keeps no state for them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from torch import nn
from torch.distributed.fsdp import register_fsdp_forward_method

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.constraints import Component
from torchtitan_vla.utils.logging import logger

from .activation_checkpoint import apply_ac
from .compile import apply_compile
from .expert_parallel import apply_ep, moe_layers
from .float8 import apply_float8
from .fsdp import FSDPSettings, disable_gradient_division, mixed_precision
from .parallel_dims import ParallelDims
from .tensor_parallel import apply_tp

COMPONENT_ORDER: tuple[str, ...] = typing.get_args(Component)

# Entry points other than forward that must see gathered root parameters.
ROOT_METHODS = ("sample_actions",)


@dataclass
class ComponentPlan:
    """How one component is cut into AC/compile blocks and FSDP units."""

    name: str
    blocks: list[nn.Module]
    """The component's own blocks (not already claimed by an earlier component)."""

    checkpoint: bool
    """Apply activation checkpointing to ``blocks``."""

    compile: bool
    """Compile ``blocks``."""

    units: list[tuple[list[nn.Module], bool]] = field(default_factory=list)
    """FSDP units in wrapping order: (modules sharded together, reshard after forward)."""


def _owners(model: nn.Module, names: list[str]) -> dict[int, set[str]]:
    owners: dict[int, set[str]] = {}
    for name in names:
        for block in model.blocks(name):
            owners.setdefault(id(block), set()).add(name)
    return owners


def _block_units(blocks: list[nn.Module], reshard: bool) -> list[tuple[list[nn.Module], bool]]:
    return [([block], reshard) for block in blocks]


def _vision_units(vision: nn.Module, blocks: list[nn.Module], unit: str, fsdp: FSDPSettings):
    if unit == "whole":
        return [([vision], fsdp.reshard_blocks())]
    # Per block, then the encoder's remainder (patch embed, position table, mergers) as one unit.
    return [*_block_units(blocks, fsdp.reshard_blocks()), ([vision], fsdp.reshard_blocks())]


def _decoder_units(decoder: nn.Module, blocks: list[nn.Module], fsdp: FSDPSettings):
    embed = getattr(decoder, "tok_embeddings", None)
    head = [m for m in (getattr(decoder, "norm", None), getattr(decoder, "lm_head", None)) if m is not None]
    tied = embed is not None and any(getattr(m, "weight", None) is embed.weight for m in head)
    units = []
    if embed is not None and not tied:
        units.append(([embed], fsdp.reshard_blocks()))
    units += _block_units(blocks, fsdp.reshard_blocks())
    if head:
        # Tied: the embedding joins the head's unit, which is gathered from the first token lookup
        # to the logits anyway.
        units.append((([embed] if tied else []) + head, fsdp.reshard_last()))
    return units


def build_plans(model: nn.Module, job_config: JobConfig, fsdp: FSDPSettings | None) -> list[ComponentPlan]:
    """The per-component plans (blocks and FSDP units), without applying anything."""
    components = model.components()
    unknown = sorted(set(components) - set(COMPONENT_ORDER))
    if unknown:
        raise ValueError(f"model.components() returned unknown components {unknown}; known: {COMPONENT_ORDER}")
    names = [n for n in COMPONENT_ORDER if n in components]
    owners = _owners(model, names)
    ac, comp = job_config.activation_checkpoint, job_config.compile
    vision_unit = job_config.parallelism.vision_fsdp_unit

    seen: set[int] = set()
    plans = []
    for name in names:
        blocks = [b for b in model.blocks(name) if id(b) not in seen]
        seen.update(id(b) for b in blocks)
        # A shared block is checkpointed/compiled if any component that owns it is listed.
        wants_ac = any(owners[id(b)] & set(ac.components) for b in blocks)
        wants_compile = any(owners[id(b)] & set(comp.components) for b in blocks)
        plan = ComponentPlan(name, blocks, checkpoint=wants_ac, compile=wants_compile and comp.enable)
        if fsdp is not None:
            if name == "vision":
                plan.units = _vision_units(components[name], blocks, vision_unit, fsdp)
            elif name == "decoder":
                plan.units = _decoder_units(components[name], blocks, fsdp)
            else:
                plan.units = _block_units(blocks, fsdp.reshard_blocks())
        plans.append(plan)
    return plans


def apply_plan(plan: ComponentPlan, job_config: JobConfig, fsdp: FSDPSettings | None) -> None:
    """AC, then compile, then FSDP, on one component (the order torchtitan documents: AC wraps the
    block's forward, compile traces the checkpointed forward, FSDP hooks stay outside both)."""
    n_ac = apply_ac(plan.blocks, job_config.activation_checkpoint) if plan.checkpoint else 0
    n_compiled = apply_compile(plan.blocks, job_config.compile) if plan.compile else 0
    if fsdp is not None:
        for modules, reshard in plan.units:
            fsdp.shard(modules if len(modules) > 1 else modules[0], reshard)
    logger.info(
        f"parallelize {plan.name}: {len(plan.blocks)} blocks, {n_ac} checkpointed, {n_compiled} compiled, "
        f"{len(plan.units)} FSDP units"
    )


def parallelize_vla(model: nn.Module, parallel_dims: ParallelDims, job_config: JobConfig) -> nn.Module:
    """Apply float8, tensor parallelism, activation checkpointing, per-block compile and FSDP2/HSDP to
    ``model`` in place.

    Call it on the meta-device model, before ``to_empty`` + ``init_weights`` or loading weights
    (see ``parallel/weights.py``), and build the optimizer afterwards (it must see the sharded
    parameters). With a single data-parallel rank no FSDP is applied (plain module).
    """
    if job_config.float8.enable:
        if parallel_dims.tp_enabled:
            raise ValueError("float8.enable with parallelism.tensor_parallel_degree > 1 is not supported yet")
        apply_float8(model, job_config.float8, parallel_dims.device_type)
    experts = []
    if moe_layers(model) and parallel_dims.expert_mesh is not None:
        experts = apply_ep(model, parallel_dims.expert_mesh, parallel_dims.tp_mesh)
    if parallel_dims.tp_enabled:
        apply_tp(model, parallel_dims.tp_mesh)
    fsdp = None
    if parallel_dims.fsdp_enabled:
        fsdp = FSDPSettings(
            mesh=parallel_dims.fsdp_mesh,
            mp_policy=mixed_precision(
                job_config.training.mixed_precision_param,
                job_config.training.mixed_precision_reduce,
                parallel_dims.device_type,
            ),
            reshard_policy=job_config.parallelism.fsdp_reshard_after_forward,
        )
    if experts and fsdp is not None:
        # Their own units (inside their layers' units): sharded over what EP leaves of data parallelism.
        expert_fsdp = dataclasses.replace(fsdp, mesh=parallel_dims.expert_fsdp_mesh)
        for module in experts:
            expert_fsdp.shard(module, fsdp.reshard_blocks())
    for plan in build_plans(model, job_config, fsdp):
        apply_plan(plan, job_config, fsdp)
    if fsdp is not None:
        run_idle_components(model)
        # The root sweeps up every parameter no unit claimed; it is last so that it claims only those.
        fsdp.shard(model, fsdp.reshard_blocks())
        for method in ROOT_METHODS:
            if hasattr(model, method):
                register_fsdp_forward_method(model, method)
        disable_gradient_division(model)
    return model


IDLE_SKIP_FLAGS = ("skip_idle_expert", "skip_idle_vision")


def run_idle_components(model: nn.Module) -> None:
    """Make every component run on every micro-batch, even one that has no work for it (a web-only batch
    for the expert, a text-only one for the vision encoder): FSDP all-gathers and reduce-scatters a
    unit's parameters only on ranks that run it, so ranks that skipped a unit would deadlock the others.
    The idle component's output is weighted by exactly zero, so losses and gradients do not change."""
    for module in model.modules():
        for flag in IDLE_SKIP_FLAGS:
            if hasattr(module, flag):
                setattr(module, flag, False)
