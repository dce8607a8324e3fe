"""Float8 through torchao (``[float8]``): which linear layers the filter converts, and that a training
step with the emulated float8 / MXFP8 matmuls of the CPU runs with a loss close to float32's."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from tests.parallel.dist_checks import SeededByBatch
from torchtitan_vla.config import JobConfig
from torchtitan_vla.models.vla import ForwardOptions
from torchtitan_vla.parallel import ParallelDims, parallelize_vla
from torchtitan_vla.parallel.float8 import float8_linears, torchao_available
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.loss import LossWeights, weighted_total

needs_torchao = pytest.mark.skipif(not torchao_available(), reason="torchao is not installed (pip install '.[float8]')")

BLOCK_LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                 "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


def float8_config(recipe: str = "tensorwise", components=("decoder", "expert")) -> JobConfig:
    cfg = JobConfig()
    cfg.float8.enable = True
    cfg.float8.recipe = recipe
    cfg.float8.components = list(components)
    return cfg


def test_filter_takes_block_linears_and_leaves_heads_norms_router_and_tables():
    model = tiny_vla()
    chosen = set(float8_linears(model, float8_config().float8))
    n_layers = len(model.vlm.layers)
    expected = {f"vlm.layers.{i}.{half}{name}.weight".removesuffix(".weight")
                for i in range(n_layers) for half in ("", "expert.") for name in BLOCK_LINEARS}
    assert chosen == expected
    vision = set(float8_linears(model, float8_config(components=["vision"]).float8))
    assert vision == {f"vlm.vision_encoder.blocks.{i}.{name}" for i in range(len(model.vlm.vision_encoder.blocks))
                      for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj",
                                   "mlp.linear_fc1", "mlp.linear_fc2")}


def test_filter_leaves_the_moe_router_and_layers_of_odd_width():
    import dataclasses

    from torchtitan_vla.models.qwen3_vl.args import FLAVORS
    from torchtitan_vla.models.qwen3_vl.decoder import MoE

    model = tiny_vla()
    layers = model.vlm.layers
    # 16 experts: a router of float8-compatible width, still left in high precision.
    layers[0].feed_forward = MoE(dataclasses.replace(FLAVORS["debug"].text, num_experts=16, moe_intermediate_size=32))
    layers[1].feed_forward.w1 = torch.nn.Linear(64, 24)  # 24: not a multiple of 16
    chosen = float8_linears(model, float8_config().float8)
    assert isinstance(layers[0].feed_forward.router, torch.nn.Linear)
    assert "vlm.layers.0.feed_forward.router" not in chosen
    assert "vlm.layers.1.feed_forward.w1" not in chosen and "vlm.layers.1.feed_forward.w2" in chosen


def one_step(model, cfg: JobConfig | None, batch) -> tuple[float, float]:
    """The loss of one step on ``batch`` and of the next step after an SGD update (float8 when ``cfg``)."""
    if cfg is not None:
        parallelize_vla(model, ParallelDims.from_config(cfg.parallelism, world_size=1), cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        weights = LossWeights()
        out = forward_backward(SeededByBatch(model, 0), [batch], weights=weights, options=ForwardOptions(), dp_mesh=None)
        losses.append(weighted_total(out.term_losses(out.sums), weights))
        opt.step()
        opt.zero_grad()
    return losses[0], losses[1]


@needs_torchao
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise", "mxfp8"])
def test_emulated_float8_step_is_close_to_float32(recipe):
    reference = tiny_vla()
    # MXFP8 scales 32-element blocks along the token dimension too: 32 samples of 13 tokens.
    batch = make_batch(reference, batch_size=32 if recipe == "mxfp8" else 4, seed=3)
    want = one_step(copy.deepcopy(reference), None, batch)
    model = copy.deepcopy(reference)
    got = one_step(model, float8_config(recipe), batch)
    converted = [n for n, m in model.named_modules() if type(m).__name__ == "Float8Linear"
                 or type(getattr(m, "weight", None)).__name__ == "MXFP8TrainingWeightWrapperTensor"]
    assert len(converted) == 2 * len(BLOCK_LINEARS) * len(model.vlm.layers)
    assert all(torch.isfinite(torch.tensor(got)))
    # float8 (e4m3) keeps 3 mantissa bits: the loss of the tiny model moves by a few percent at most.
    assert got == pytest.approx(want, rel=0.05)
