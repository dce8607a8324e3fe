"""Model FLOPs of one batch, per component, for MFU (PaLM convention: useful FLOPs, no recompute).

Method (stated in every report that prints MFU):
* a matmul parameter used by one token costs 2 FLOPs forward and 4 backward: ``6 * P * tokens`` for a
  trainable component, ``2 * P * tokens`` for a frozen one (forward only; its activation gradients,
  when a trainable part upstream needs them, are not counted);
* tokens per component: vision = image/video patches before merging, decoder = non-padding tokens,
  expert = its suffix per robot sample as the model lays it out (``ExpertLayout``: a state token only
  with continuous state, a time token in late fusion, the H action tokens), plus in late fusion the
  sample's context tokens, which run through the expert's own layers;
* attention scores and weighted values add ``4 * d_attn`` FLOPs forward per (query, key) pair, times 3
  when trained: per image/frame for vision (bidirectional), causal over each sequence for the decoder,
  the expert's suffix tokens over prefix + suffix, and in late fusion the context among itself;
* embedding lookups are free; a tied LM head counts once, as the output matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from torchtitan_vla.data.batch import Batch

# bf16 dense peak FLOP/s per device, by a substring of torch.cuda.get_device_name().
PEAK_FLOPS_BF16 = [
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2.25e15),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 125e12),
    ("MI300X", 1300e12),
]


def peak_flops_per_device(device: torch.device, override: float = 0.0) -> float | None:
    """The MFU denominator: ``override`` if set, the table's entry for the GPU, else None (n/a)."""
    if override > 0:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_FLOPS_BF16:
        if key in name:
            return value
    return None


def _attention_width(module: nn.Module) -> tuple[int, int]:
    """(number of attention layers, query width n_heads * head_dim) found inside ``module``."""
    layers, width = 0, 0
    for sub in module.modules():
        if hasattr(sub, "n_heads") and hasattr(sub, "head_dim"):
            layers += 1
            width = int(sub.n_heads) * int(sub.head_dim)
    return layers, width


@dataclass(frozen=True)
class ExpertLayout:
    """How many tokens the Action Expert runs per robot sample (``TrainSpec.expert_layout``)."""

    suffix_tokens: int
    """Condition tokens (state, time) plus the H action tokens."""

    reads_context: bool
    """Late fusion: the VLM's hidden states of the whole prefix also run through the expert's layers."""


class FlopCounter:
    """Per-component parameter counts and attention shapes, measured once from the model."""

    def __init__(self, components: dict[str, nn.Module], expert_layout: ExpertLayout | None):
        self.expert_layout = expert_layout
        seen: set[int] = set()
        self.params: dict[str, int] = {}
        self.attention: dict[str, tuple[int, int]] = {}
        for name, module in components.items():
            embedding_ids = {id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
            tied_head = any(
                isinstance(m, nn.Linear) and id(m.weight) in embedding_ids for m in module.modules()
            )
            count = 0
            for p in module.parameters():
                if id(p) in seen or (id(p) in embedding_ids and not tied_head):
                    continue
                seen.add(id(p))
                count += p.numel()  # DTensor.numel() is the global size
            self.params[name] = count
            self.attention[name] = _attention_width(module)

    def batch_flops(self, batch: Batch, trainable: list[str]) -> dict[str, float]:
        """FLOPs of one forward (+ backward for trainable components) of ``batch``, per component."""
        tokens, pairs = self._tokens_and_pairs(batch)
        out = {}
        for name in self.params:
            mult = 3.0 if name in trainable else 1.0
            layers, width = self.attention.get(name, (0, 0))
            out[name] = mult * (2.0 * self.params[name] * tokens[name] + 4.0 * layers * width * pairs[name])
        return out

    def _tokens_and_pairs(self, batch: Batch) -> tuple[dict[str, float], dict[str, float]]:
        """Tokens each component processes and the (query, key) pairs it attends, per component."""
        lengths = batch.attention_mask.sum(dim=1).double()
        tokens = {"vision": 0.0, "decoder": float(lengths.sum()), "expert": 0.0}
        pairs = {"vision": 0.0, "decoder": float((lengths * (lengths + 1) / 2).sum()), "expert": 0.0}
        for pixels, grid in ((batch.pixel_values, batch.image_grid_thw), (batch.pixel_values_videos, batch.video_grid_thw)):
            if pixels is not None:
                tokens["vision"] += pixels.shape[0]
                per_frame = (grid[:, 1] * grid[:, 2]).double()
                pairs["vision"] += float((grid[:, 0].double() * per_frame**2).sum())
        robot = self._robot_rows(batch)
        if robot is not None:
            suffix, context = self.expert_layout.suffix_tokens, lengths[robot]
            tokens["expert"] = float(robot.sum()) * suffix
            pairs["expert"] = float((suffix * (context + suffix)).sum())
            if self.expert_layout.reads_context:
                tokens["expert"] += float(context.sum())
                pairs["expert"] += float((context**2).sum())
        return tokens, pairs

    def _robot_rows(self, batch: Batch) -> torch.Tensor | None:
        """(B,) bool rows the expert is trained on, or None when the expert has no work in this batch."""
        if self.expert_layout is None or batch.actions is None:
            return None
        if batch.has_actions is None:
            return torch.ones(batch.num_samples, dtype=torch.bool)
        return batch.has_actions.bool()
