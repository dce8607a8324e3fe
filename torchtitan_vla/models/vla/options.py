"""What the trainer passes into ``VLA.forward`` each step, and what it gets back.

The options are the training-time knobs a curriculum stage may change (``[training]`` is stage-level),
so they travel with every call instead of being frozen into the model when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...config.training import DelayDistribution


@dataclass(frozen=True)
class FlowTimeDistribution:
    """Training flow times ``t = scale * Beta(alpha, beta) + offset`` (openpi: 1.5, 1.0, 0.999, 0.001)."""

    alpha: float = 1.5
    beta: float = 1.0
    scale: float = 0.999
    offset: float = 0.001


@dataclass(frozen=True)
class RTCPrefix:
    """Prefix lengths d of training-time real-time chunking, drawn per sample (``rtc.sample_delays``)."""

    min_delay: int = 0
    max_delay: int = 4
    distribution: DelayDistribution = "uniform"


@dataclass(frozen=True)
class ForwardOptions:
    knowledge_insulation: bool = False
    """Stop the flow loss's gradient at the VLM: the expert reads detached prefix keys/values (joint
    fusion) or a detached context (late fusion)."""

    flow_time: FlowTimeDistribution = field(default_factory=FlowTimeDistribution)
    """Distribution of the flow times drawn when ``forward`` is not given ``time``."""

    rtc_prefix: RTCPrefix | None = None
    """Training-time real-time chunking: a clean action prefix per sample, no loss on it (None: off); drawn
    into ``Batch.action_prefix`` by ``forward_backward`` before the targets are counted."""

    flow: bool = True
    """Run the Action Expert on robot samples. False (a stage whose flow loss weight is 0, e.g. pi0-FAST
    training): only the VLM runs and the flow loss sums are zero."""


@dataclass
class LossSums:
    """Per-sample loss sums of one micro-batch; the loss module divides them by counts it takes from the
    batch (see ``train/loss.py``), so the model never normalises."""

    text: torch.Tensor
    """(B,) float32 sum of the text cross-entropy over each sample's labelled tokens."""

    action: torch.Tensor
    """(B,) float32 sum of the flow-matching squared error over each sample's valid action elements."""

    subtask: torch.Tensor
    """(B,) float32 sum of the text cross-entropy over robot samples' labelled tokens (their subtask
    annotations; ``text`` holds the other samples')."""

    fast: torch.Tensor
    """(B,) float32 sum of the cross-entropy over each robot sample's FAST action tokens and EOS (the
    labels inside ``Batch.fast_mask``; ``text`` holds the others)."""
