"""How the model is spread over devices: mesh, sharding, activation checkpointing, compilation."""

from dataclasses import dataclass, field
from typing import Literal

from .constraints import Component, DeriveOrPositiveInt, PositiveInt

VisionFSDPUnit = Literal["whole", "block"]
ACMode = Literal["none", "full", "selective"]
ReshardPolicy = Literal["default", "always", "never"]
CompileBackend = Literal["inductor", "aot_eager", "eager"]


@dataclass
class Parallelism:
    data_parallel_replicate_degree: PositiveInt = 1
    """Replicas of the model (HSDP's outer dimension); 1 with FSDP alone."""

    data_parallel_shard_degree: DeriveOrPositiveInt = -1
    """Ranks that shard one replica (FSDP). -1: whatever is left of the world size."""

    tensor_parallel_degree: PositiveInt = 1
    """Ranks that split each layer's heads and MLP (innermost mesh dimension: keep it within a node).
    Must divide the decoder's and vision encoder's head counts and the decoder's KV heads."""

    expert_parallel_degree: PositiveInt = 1
    """Ranks that split each MoE layer's experts, carved from ``data_parallel_shard_degree`` (which it
    must divide; MoE flavors only). Tokens reach their experts' ranks by all-to-all; with TP the TP ranks
    split the experts too, so each rank keeps ``num_experts / (expert_parallel_degree x
    tensor_parallel_degree)`` experts (a whole number), FSDP-sharded over the rest of the shard dimension."""

    fsdp_reshard_after_forward: ReshardPolicy = "default"
    """``default`` (reshard blocks, keep the final norm and head), ``always`` or ``never``."""

    vision_fsdp_unit: VisionFSDPUnit = "whole"
    """``whole``: the vision encoder is one FSDP unit (few, large all-gathers); ``block``: one per block."""


@dataclass
class ActivationCheckpoint:
    mode: ACMode = "none"
    """``none``, ``full`` (recompute whole blocks) or ``selective``."""

    selective_option: Literal["op"] | PositiveInt = "op"
    """With ``selective``: ``op`` (save matmul and attention outputs, recompute the rest) or an
    integer N (checkpoint every N-th block; in TOML ``2``, not ``"2"``)."""

    components: list[Component] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose blocks are checkpointed; all three (the default) means every component the model has."""


@dataclass
class Compile:
    enable: bool = False
    """``torch.compile`` each transformer block (applied after checkpointing, before sharding)."""

    components: list[Component] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose blocks are compiled; all three (the default) means every component the model has."""

    backend: CompileBackend = "inductor"
    """torch.compile backend."""
