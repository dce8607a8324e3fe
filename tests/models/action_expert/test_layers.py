"""Expert layers and the joint layer: each use of a joint layer has its own method and return type."""

import torch

from tests.models.vla.helpers import tiny_vla
from torchtitan_vla.models.action_expert import ExpertInputs, JointLayer
from torchtitan_vla.models.action_expert.masks import suffix_blocks, suffix_mask
from torchtitan_vla.models.qwen3_vl.decoder import DecoderLayer
from torchtitan_vla.models.qwen3_vl.kv_cache import KVCache
from torchtitan_vla.models.qwen3_vl.masks import causal_mask

PREFIX, SUFFIX = 7, 5


def _joint_layer_and_inputs(insulate=False):
    vla = tiny_vla()
    layer = vla.vlm.layers[1]
    torch.manual_seed(0)
    width, expert_width, head_dim = vla.vlm.args.text.dim, layer.expert.attention.wq.in_features, layer.attention.head_dim
    valid = torch.ones(2, PREFIX, dtype=torch.bool)
    valid[1, -2:] = False
    x, expert_x = torch.randn(2, PREFIX, width), torch.randn(2, SUFFIX, expert_width)
    angles = torch.rand(2, PREFIX + SUFFIX, head_dim)
    cos, sin = angles.cos(), angles.sin()
    inputs = ExpertInputs(cos[:, PREFIX:], sin[:, PREFIX:], suffix_mask(valid, suffix_blocks(1, SUFFIX - 1)), None, insulate)
    mask = causal_mask(valid)
    return layer, x, expert_x, cos[:, :PREFIX], sin[:, :PREFIX], mask, inputs


def test_forward_is_the_plain_decoder_layer():
    layer, x, _, cos, sin, mask, _ = _joint_layer_and_inputs()
    assert isinstance(layer, JointLayer)
    out = layer(x, cos, sin, mask)
    torch.testing.assert_close(out, DecoderLayer.forward(layer, x, cos, sin, mask), rtol=0, atol=0)
    assert out.shape == x.shape


def test_forward_joint_returns_both_streams_and_matches_the_decoder():
    layer, x, expert_x, cos, sin, mask, inputs = _joint_layer_and_inputs()
    new_x, new_expert_x = layer.forward_joint(x, expert_x, cos, sin, mask, inputs)
    assert new_x.shape == x.shape and new_expert_x.shape == expert_x.shape
    # The prefix half is exactly the decoder layer: the expert tokens never change it.
    torch.testing.assert_close(new_x, layer(x, cos, sin, mask), rtol=0, atol=1e-6)
    _, other_expert_x = layer.forward_joint(x, torch.randn_like(expert_x), cos, sin, mask, inputs)
    assert not torch.allclose(other_expert_x, new_expert_x)


def test_forward_cached_equals_the_joint_expert_half():
    layer, x, expert_x, cos, sin, mask, inputs = _joint_layer_and_inputs()
    cache = KVCache(layer.layer_id + 1)
    layer(x, cos, sin, mask, cache)  # fills this layer's prefix keys/values
    cached = layer.forward_cached(expert_x, cache, inputs)
    _, joint = layer.forward_joint(x, expert_x, cos, sin, mask, inputs)
    torch.testing.assert_close(cached, joint, rtol=0, atol=1e-6)


def test_insulated_expert_half_sends_no_gradient_into_the_prefix():
    for insulate in (True, False):
        layer, x, expert_x, cos, sin, mask, inputs = _joint_layer_and_inputs(insulate)
        x.requires_grad_(True)
        _, out = layer.forward_joint(x, expert_x, cos, sin, mask, inputs)
        out.sum().backward()
        reached = x.grad is not None and float(x.grad.abs().sum()) > 0
        assert reached != insulate


def test_adarms_expert_starts_as_identity():
    vla = tiny_vla(time_conditioning="adarms")
    layer = vla.vlm.layers[0].expert
    x = torch.randn(2, 5, layer.attention.wq.in_features)
    cos, sin = torch.ones(2, 5, layer.attention.head_dim), torch.zeros(2, 5, layer.attention.head_dim)
    out, _, _ = layer(x, cos, sin, None, torch.randn(2, x.shape[-1]))
    torch.testing.assert_close(out, x)
