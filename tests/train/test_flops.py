"""Model FLOPs of a batch follow its real layout: patches and per-frame attention for vision, non-padding
tokens and causal pairs for the decoder, the expert's suffix (and, in late fusion, the context it reads)
for robot rows only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.train.flops import ExpertLayout, FlopCounter


class _Attending(nn.Module):
    """4 parameters and one attention layer of width 2 (1 head x head_dim 2)."""

    n_heads, head_dim = 1, 2

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2, bias=False)


def _batch() -> Batch:
    return Batch(
        input_ids=torch.zeros(2, 5, dtype=torch.long), labels=torch.zeros(2, 5, dtype=torch.long),
        attention_mask=torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool),
        pixel_values=torch.zeros(4, 3), image_grid_thw=torch.tensor([[1, 2, 2]]),
        actions=torch.zeros(2, 2, 2), has_actions=torch.tensor([True, False]),
    )


@pytest.mark.parametrize("late", [False, True])
def test_flops_per_component(late):
    counter = FlopCounter({name: _Attending() for name in ("vision", "decoder", "expert")},
                          ExpertLayout(suffix_tokens=3, reads_context=late))
    flops = counter.batch_flops(_batch(), trainable=["decoder", "expert"])

    def expected(mult, tokens, pairs):
        return mult * (2.0 * 4 * tokens + 4.0 * 1 * 2 * pairs)

    assert flops["vision"] == expected(1, tokens=4, pairs=16)  # frozen: forward only; 4 patches, 4x4 pairs
    assert flops["decoder"] == expected(3, tokens=6, pairs=4 * 5 / 2 + 2 * 3 / 2)
    # One robot row of 4 prefix tokens: 3 suffix tokens over 4 + 3 keys (+ the context through the stack).
    assert flops["expert"] == expected(3, tokens=3 + (4 if late else 0), pairs=3 * 7 + (16 if late else 0))


def test_no_expert_flops_without_actions_or_layout():
    batch = _batch()
    batch.actions = None
    parts = {name: _Attending() for name in ("vision", "decoder", "expert")}
    assert FlopCounter(parts, ExpertLayout(3, False)).batch_flops(batch, ["expert"])["expert"] == 0
    assert FlopCounter(parts, None).batch_flops(_batch(), ["expert"])["expert"] == 0
