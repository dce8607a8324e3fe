"""The optimisation: optimizer, learning-rate schedule and the training loop's own settings."""

from dataclasses import dataclass, field
from typing import Literal

OptimizerName = Literal["AdamW"]
OptimizerImplementation = Literal["foreach", "fused", "for-loop"]
LRScheduleKind = Literal["cosine", "wsd", "linear", "constant"]
PrecisionName = Literal["float32", "bfloat16", "float16"]


@dataclass
class Optimizer:
    name: OptimizerName = "AdamW"
    """Optimizer class; AdamW is the one supported."""

    lr: float = 3e-4
    """Peak learning rate of every component without an entry in ``component_lr``."""

    component_lr: dict[str, float] = field(default_factory=dict)
    """Peak learning rate per component (``vision``, ``decoder``, ``expert``), e.g. ``{ vision = 1e-5 }``."""

    weight_decay: float = 0.1
    """Decoupled weight decay; never applied to norms, biases and embeddings."""

    component_weight_decay: dict[str, float] = field(default_factory=dict)
    """Weight decay per component, overriding ``weight_decay``."""

    beta1: float = 0.9
    """AdamW first-moment decay."""

    beta2: float = 0.95
    """AdamW second-moment decay."""

    eps: float = 1e-8
    """AdamW epsilon."""

    implementation: OptimizerImplementation = "foreach"
    """``foreach``, ``fused`` (CUDA) or ``for-loop``."""


@dataclass
class LRSchedule:
    kind: LRScheduleKind = "cosine"
    """``cosine`` (warmup then cosine decay), ``wsd`` (warmup-stable-decay), ``linear`` or ``constant``."""

    warmup_steps: int = 0
    """Linear warmup from 0 to the peak learning rate over this many steps."""

    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak."""

    decay_ratio: float = 0.1
    """WSD: fraction of the stage's steps spent in the final decay."""


@dataclass
class Training:
    steps: int = 100
    """Optimizer steps when no curriculum is given; a stage's own ``steps`` replaces it."""

    local_batch_size: int = 8
    """Samples per micro-batch on one rank."""

    global_batch_size: int = -1
    """Samples per optimizer step over all data-parallel ranks. -1: local size times ranks.
    Larger values accumulate gradients over several micro-batches."""

    max_norm: float = 1.0
    """Global gradient-norm clipping threshold (over all shards); 0 disables clipping."""

    text_loss_weight: float = 1.0
    """Weight of the text cross-entropy loss."""

    action_loss_weight: float = 1.0
    """Weight of the flow-matching action loss."""

    trainable: list[str] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose parameters train; the others are frozen (no gradient, no optimizer state)."""

    mixed_precision_param: PrecisionName = "bfloat16"
    """Compute dtype of parameters under FSDP on GPU (master weights stay float32). CPU runs use float32."""

    mixed_precision_reduce: PrecisionName = "float32"
    """Dtype of gradient reduction under FSDP."""

    ema_decay: float = 0.0
    """Exponential moving average of the weights (e.g. 0.999); 0 disables it. The EMA is exported."""

    max_consecutive_nonfinite: int = 5
    """Steps with a NaN/Inf loss or gradient are skipped and counted; this many in a row stop the run."""

    gc_freq: int = 50
    """Run Python's garbage collector every this many steps (automatic GC is disabled while training)."""

    validation_freq: int = 0
    """Every this many steps, compute the loss on ``data.validation_mixture``; 0 disables it."""

    validation_steps: int = 4
    """Micro-batches per validation."""

    debug_inject_nonfinite_steps: list[int] = field(default_factory=list)
    """Testing only: at these (curriculum-global) steps the loss is multiplied by NaN, to exercise the
    non-finite guard. Empty in real runs."""

    debug_sigkill_at_step: int = 0
    """Testing only: rank 0 sends itself SIGKILL when this step begins (a crash without a chance to
    save), to exercise resumption. 0 disables it."""
