"""Model FLOPs of one batch, per component, for MFU (PaLM convention: useful FLOPs, no recompute).

Method (stated in every report that prints MFU):
* a matmul parameter used by one token costs 2 FLOPs forward and 4 backward: ``6 * P * tokens`` for a
  trainable component, ``2 * P * tokens`` for a frozen one (forward only; its activation gradients,
  when a trainable part upstream needs them, are not counted);
* tokens per component: vision = image/video patches before merging, decoder = non-padding tokens,
  expert = (1 state token + H action tokens) per robot sample;
* attention scores and weighted values add ``4 * d_attn`` FLOPs forward per (query, key) pair, times 3
  when trained: per image/frame for vision (bidirectional), causal over each sequence for the decoder,
  and the expert's suffix tokens over prefix + suffix;
* embedding lookups are free; a tied LM head counts once, as the output matmul.
"""

from __future__ import annotations

import torch
from torch import nn

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


class FlopCounter:
    """Per-component parameter counts and attention shapes, measured once from the model."""

    def __init__(self, components: dict[str, nn.Module]):
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

    def tokens(self, batch: dict) -> dict[str, int]:
        vision = 0
        for key in ("pixel_values", "pixel_values_videos"):
            if batch.get(key) is not None:
                vision += int(batch[key].shape[0])
        decoder = int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
        expert = 0
        if "actions" in batch and "has_actions" in batch:
            expert = int(batch["has_actions"].sum()) * (int(batch["actions"].shape[1]) + 1)
        return {"vision": vision, "decoder": decoder, "expert": expert}

    def batch_flops(self, batch: dict, trainable: list[str]) -> dict[str, float]:
        """FLOPs of one forward (+ backward for trainable components) of ``batch``, per component."""
        tokens = self.tokens(batch)
        pairs = self._attention_pairs(batch)
        out = {}
        for name in self.params:
            mult = 3.0 if name in trainable else 1.0
            layers, width = self.attention.get(name, (0, 0))
            out[name] = mult * (2.0 * self.params[name] * tokens.get(name, 0) + 4.0 * layers * width * pairs.get(name, 0))
        return out

    @staticmethod
    def _attention_pairs(batch: dict) -> dict[str, float]:
        """(query, key) pairs attended per component."""
        vision = 0.0
        for key in ("image_grid_thw", "video_grid_thw"):
            grid = batch.get(key)
            if grid is not None and len(grid):
                per_frame = (grid[:, 1] * grid[:, 2]).double()
                vision += float((grid[:, 0].double() * per_frame**2).sum())
        mask = batch.get("attention_mask")
        lengths = mask.sum(dim=1).double() if mask is not None else torch.full((batch["input_ids"].shape[0],), float(batch["input_ids"].shape[1]))
        decoder = float((lengths * (lengths + 1) / 2).sum())
        expert = 0.0
        if "actions" in batch and "has_actions" in batch:
            suffix = batch["actions"].shape[1] + 1
            robot = batch["has_actions"].bool()
            expert = float((suffix * (lengths[robot] + suffix)).sum())
        return {"vision": vision, "decoder": decoder, "expert": expert}
