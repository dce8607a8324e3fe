"""Construction, components/blocks, trainable parts and LoRA."""

import json

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.config.model import ActionExpert, Model
from torchtitan_vla.models.action_expert import JointLayer
from torchtitan_vla.models.lora import LoRALinear, merge_lora
from torchtitan_vla.models.vla import VLA


def _hidden_and_velocity(vla, batch, seed=0):
    torch.manual_seed(seed)
    x_t = torch.randn(2, vla.expert_cfg.action_horizon, vla.expert_cfg.max_action_dim)
    return vla.hidden_and_velocity(vla.observe(batch), x_t, torch.tensor([0.3, 0.7]))


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_components_partition_the_parameters(fusion):
    vla = tiny_vla(fusion=fusion)
    seen = {}
    for name, part in vla.components().items():
        for param in part.parameters():
            assert id(param) not in seen, f"{name} shares a parameter with {seen.get(id(param))}"
            seen[id(param)] = name
    assert set(seen) == {id(p) for p in vla.parameters()}
    decoder_blocks, expert_blocks = vla.blocks("decoder"), vla.blocks("expert")
    assert len(vla.blocks("vision")) == vla.vlm.args.vision.depth
    if fusion == "joint":
        assert all(isinstance(b, JointLayer) for b in decoder_blocks) and expert_blocks == []
    else:
        assert len(expert_blocks) == vla.vlm.args.text.n_layers and not isinstance(decoder_blocks[0], JointLayer)


def test_expert_matches_decoder_head_geometry_with_its_own_width():
    vla = VLA.build_debug(hidden_size=48, intermediate_size=80)
    text = vla.vlm.args.text
    for layer in vla.vlm.layers:
        attention = layer.expert.attention
        assert (attention.n_heads, attention.n_kv_heads, attention.head_dim) == (text.n_heads, text.n_kv_heads, text.head_dim)
        assert attention.wq.in_features == 48 and layer.expert.feed_forward.w1.out_features == 80


def test_meta_construction_then_init_weights():
    with torch.device("meta"):
        vla = VLA.from_config(Model(flavor="debug", lora_rank=2), ActionExpert(action_horizon=4, max_action_dim=6,
                                                                                max_state_dim=5))
    assert all(p.is_meta for p in vla.parameters())
    vla.to_empty(device="cpu")
    vla.init_weights(buffer_device="cpu")
    assert all(torch.isfinite(p).all() for p in vla.parameters())
    batch = make_batch(vla)
    assert torch.isfinite(vla.sample_actions(batch, num_steps=2)).all()


def test_set_trainable_freezes_components():
    vla = tiny_vla(fusion="late")
    vla.set_trainable(["expert"])
    parts = vla.components()
    assert all(p.requires_grad for p in parts["expert"].parameters())
    assert not any(p.requires_grad for name in ("vision", "decoder") for p in parts[name].parameters())


def test_lora_adapters_train_alone_and_merge():
    torch.manual_seed(0)
    model_cfg = Model(flavor="debug", lora_rank=4, lora_alpha=8.0)
    vla = VLA.from_config(model_cfg, ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    batch = make_batch(vla)
    plain = VLA.from_config(Model(flavor="debug"), ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    plain.load_state_dict({k: v for k, v in vla.state_dict().items() if ".lora_" not in k})
    torch.testing.assert_close(_hidden_and_velocity(vla, batch), _hidden_and_velocity(plain, batch))  # adapters start as no-ops

    vla.set_trainable(["decoder", "expert"])
    trainable = {n for n, p in vla.named_parameters() if p.requires_grad}
    assert any(".lora_a." in n for n in trainable) and any(".expert.attention.wq.lora_b." in n for n in trainable)
    assert "vlm.layers.0.attention.wq.weight" not in trainable and "vlm.tok_embeddings.weight" not in trainable
    assert "expert.heads.action_in_proj.weight" in trainable

    for module in vla.modules():
        if isinstance(module, LoRALinear):
            module.lora_b.weight.data.normal_(0, 0.05)
    before = _hidden_and_velocity(vla, batch)
    assert merge_lora(vla) > 0
    assert not any(isinstance(m, LoRALinear) for m in vla.modules())
    torch.testing.assert_close(_hidden_and_velocity(vla, batch), before, rtol=1e-4, atol=1e-5)


def test_from_config_only_builds(tmp_path):
    """Construction never reads weights: a folder with config.json (and no safetensors) is enough, even
    with load_hf_weights (the trainer loads them afterwards through the HF read path)."""
    vla = tiny_vla()
    (tmp_path / "config.json").write_text(json.dumps(vla.vlm.args.to_hf_config()))
    built = VLA.from_config(Model(hf_assets_path=str(tmp_path), load_hf_weights=True),
                            ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    assert built.vlm.args == vla.vlm.args
