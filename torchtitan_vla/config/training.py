"""The optimisation: optimizer, learning-rate schedule and the training loop's own settings."""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from .constraints import (
    Component,
    Decay,
    DeriveOrPositiveInt,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    UnitInterval,
)

OptimizerName = Literal["AdamW"]
OptimizerImplementation = Literal["foreach", "fused", "for-loop"]
LRScheduleKind = Literal["cosine", "wsd", "linear", "constant"]
PrecisionName = Literal["float32", "bfloat16", "float16"]
DelayDistribution = Literal["uniform", "exponential"]


@dataclass
class Optimizer:
    name: OptimizerName = "AdamW"
    """Optimizer class; AdamW is the one supported."""

    lr: NonNegativeFloat = 3e-4
    """Peak learning rate of every component without an entry in ``component_lr``."""

    component_lr: dict[Component, NonNegativeFloat] = field(default_factory=dict)
    """Peak learning rate per component (``vision``, ``decoder``, ``expert``), e.g. ``{ vision = 1e-5 }``."""

    weight_decay: NonNegativeFloat = 0.1
    """Decoupled weight decay; never applied to norms, biases and embeddings."""

    component_weight_decay: dict[Component, NonNegativeFloat] = field(default_factory=dict)
    """Weight decay per component, overriding ``weight_decay``."""

    beta1: Decay = 0.9
    """AdamW first-moment decay."""

    beta2: Decay = 0.95
    """AdamW second-moment decay."""

    eps: PositiveFloat = 1e-8
    """AdamW epsilon."""

    implementation: OptimizerImplementation = "foreach"
    """``foreach``, ``fused`` (CUDA) or ``for-loop``."""


@dataclass
class LRSchedule:
    kind: LRScheduleKind = "cosine"
    """``cosine`` (warmup then cosine decay), ``wsd`` (warmup-stable-decay), ``linear`` or ``constant``."""

    warmup_steps: NonNegativeInt = 0
    """Linear warmup from 0 to the peak learning rate over this many steps."""

    min_lr_ratio: UnitInterval = 0.0
    """Final learning rate as a fraction of the peak."""

    decay_ratio: Annotated[float, Range(min=0, max=1, min_open=True)] = 0.1
    """WSD: fraction of the stage's steps spent in the final decay."""


@dataclass
class Training:
    steps: PositiveInt = 100
    """Optimizer steps when no curriculum is given; a stage's own ``steps`` replaces it."""

    local_batch_size: PositiveInt = 8
    """Samples per micro-batch on one rank."""

    global_batch_size: DeriveOrPositiveInt = -1
    """Samples per optimizer step over all data-parallel ranks. -1: local size times ranks.
    Larger values accumulate gradients over several micro-batches; a multiple of ``local_batch_size``."""

    max_norm: NonNegativeFloat = 1.0
    """Global gradient-norm clipping threshold (over all shards); 0 disables clipping."""

    text_loss_weight: NonNegativeFloat = 1.0
    """Weight of the text cross-entropy loss."""

    action_loss_weight: NonNegativeFloat = 1.0
    """Weight of the flow-matching action loss. 0: the stage does not run the Action Expert at all (no flow
    loss is computed or logged; pi0-FAST training, VLM-only stages)."""

    subtask_loss_weight: NonNegativeFloat = 1.0
    """Weight of the text loss on robot samples' subtask annotations (sources with a ``subtask_key``);
    reported as its own term, apart from the web text loss."""

    fast_loss_weight: NonNegativeFloat = 0.0
    """Weight of the discrete action loss: the VLM's cross-entropy on robot samples' FAST tokens and EOS
    (needs ``model.fast_tokenizer_path``). 0: not optimised (the tokens are still in the prompt when a
    tokenizer is set, hidden from the expert)."""

    trainable: list[Component] = field(default_factory=lambda: ["vision", "decoder", "expert"])
    """Components whose parameters train; the others are frozen (no gradient, no optimizer state). All
    three (the default) means every component the model has; ``expert`` alone needs the Action Expert."""

    knowledge_insulation: bool = False
    """Stop the flow loss's gradient at the VLM's keys/values, so only the text loss (and the FAST loss,
    ``fast_loss_weight``: knowledge insulation as published) trains the VLM."""

    flow_time_alpha: PositiveFloat = 1.5
    """Flow-matching training times are ``flow_time_scale * Beta(alpha, beta) + flow_time_offset``
    (openpi: 1.5, 1.0)."""

    flow_time_beta: PositiveFloat = 1.0
    """Second Beta parameter of the training-time distribution."""

    flow_time_scale: PositiveFloat = 0.999
    """Scale of the Beta sample; with ``flow_time_offset`` keeps t inside (0, 1] (scale + offset <= 1)."""

    flow_time_offset: NonNegativeFloat = 0.001
    """Offset added to the scaled Beta sample."""

    rtc_max_delay: NonNegativeInt = 0
    """Training-time real-time chunking: the first d steps of every robot chunk enter the expert clean (flow
    time 0) with no loss, d drawn per sample in ``[rtc_min_delay, rtc_max_delay]``; serving then conditions
    on the previous chunk's first d actions without guidance. 0 turns it off. Below the action horizon."""

    rtc_min_delay: NonNegativeInt = 0
    """Smallest training-time RTC prefix length (at most ``rtc_max_delay``)."""

    rtc_delay_distribution: DelayDistribution = "uniform"
    """Training-time RTC prefix lengths: ``uniform``, or ``exponential`` (short delays more often)."""

    mixed_precision_param: PrecisionName = "bfloat16"
    """Compute dtype of parameters under FSDP on GPU (master weights stay float32). CPU runs use float32."""

    mixed_precision_reduce: PrecisionName = "float32"
    """Dtype of gradient reduction under FSDP."""

    ema_decay: Decay = 0.0
    """Exponential moving average of the weights (e.g. 0.999); 0 disables it. The EMA is exported."""

    max_consecutive_nonfinite: PositiveInt = 5
    """Steps with a NaN/Inf loss or gradient are skipped and counted; this many in a row stop the run."""

    gc_freq: NonNegativeInt = 50
    """Run Python's garbage collector every this many steps (automatic GC is disabled while training); 0: never."""

    validation_freq: NonNegativeInt = 0
    """Every this many steps, compute the loss on ``data.validation_mixture`` (required then); 0 disables it."""

    validation_steps: PositiveInt = 4
    """Micro-batches per validation."""
