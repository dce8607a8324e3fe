"""How the model is spread over devices: mesh, sharding, activation checkpointing, compilation."""

from dataclasses import dataclass, field
from typing import Literal

VisionFSDPUnit = Literal["whole", "block"]
ACMode = Literal["none", "full", "selective"]


@dataclass
class Parallelism:
    data_parallel_replicate_degree: int = 1
    """Replicas of the model (HSDP's outer dimension); 1 with FSDP alone."""

    data_parallel_shard_degree: int = -1
    """Ranks that shard one replica (FSDP). -1: whatever is left of the world size."""

    tensor_parallel_degree: int = 1
    """Reserved: tensor parallelism is validated but only degree 1 is implemented."""

    fsdp_reshard_after_forward: str = "default"
    """``default`` (reshard blocks, keep the final norm and head), ``always`` or ``never``."""

    vision_fsdp_unit: VisionFSDPUnit = "whole"
    """``whole``: the vision encoder is one FSDP unit (few, large all-gathers); ``block``: one per block."""


@dataclass
class ActivationCheckpoint:
    mode: ACMode = "none"
    """``none``, ``full`` (recompute whole blocks) or ``selective``."""

    selective_option: str = "op"
    """With ``selective``: ``op`` (save matmul and attention outputs, recompute the rest) or an
    integer N (checkpoint every N-th block)."""

    components: list[str] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose blocks are checkpointed."""


@dataclass
class Compile:
    enable: bool = False
    """``torch.compile`` each transformer block (applied after checkpointing, before sharding)."""

    components: list[str] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose blocks are compiled."""

    backend: str = "inductor"
    """torch.compile backend."""
