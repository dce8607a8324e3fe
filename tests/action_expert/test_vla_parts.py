"""Construction, components/blocks, trainable parts, LoRA and export of the VLM part."""

import pytest
import torch
from ae_helpers import make_batch, single_thread, tiny_vla  # noqa: F401

from torchtitan_vla.config.model import ActionExpert, Model
from torchtitan_vla.models.action_expert import JointLayer
from torchtitan_vla.models.lora import LoRALinear, merge_lora
from torchtitan_vla.models.qwen3_vl.hf_checkpoint import save_hf_checkpoint
from torchtitan_vla.models.vla import VLA

pytestmark = pytest.mark.usefixtures("single_thread")


def _velocity(vla, batch, seed=0):
    torch.manual_seed(seed)
    robot = vla._robot_inputs(batch, need_actions=False)
    x_t = torch.randn(2, vla.expert_cfg.action_horizon, vla.expert_cfg.max_action_dim)
    return vla.predict_velocity(vla._prefix(batch), robot["state"], x_t, torch.tensor([0.3, 0.7]))


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


def test_adarms_expert_starts_as_identity():
    vla = tiny_vla(time_conditioning="adarms")
    layer = vla.vlm.layers[0].expert
    x = torch.randn(2, 5, layer.attention.wq.in_features)
    cos, sin = torch.ones(2, 5, layer.attention.head_dim), torch.zeros(2, 5, layer.attention.head_dim)
    out, _, _ = layer(x, cos, sin, None, torch.randn(2, x.shape[-1]))
    torch.testing.assert_close(out, x)


def test_set_trainable_freezes_components():
    vla = tiny_vla(fusion="late")
    vla.set_trainable(["expert"])
    parts = vla.components()
    assert all(p.requires_grad for p in parts["expert"].parameters())
    assert not any(p.requires_grad for name in ("vision", "decoder") for p in parts[name].parameters())
    with pytest.raises(ValueError, match="training.trainable"):
        vla.set_trainable(["vlm"])


def test_lora_adapters_train_alone_and_merge_for_export():
    torch.manual_seed(0)
    model_cfg = Model(flavor="debug", lora_rank=4, lora_alpha=8.0)
    vla = VLA.from_config(model_cfg, ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    batch = make_batch(vla)
    plain = VLA.from_config(Model(flavor="debug"), ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    plain.load_state_dict({k: v for k, v in vla.state_dict().items() if ".lora_" not in k})
    torch.testing.assert_close(_velocity(vla, batch), _velocity(plain, batch))  # adapters start as no-ops

    vla.set_trainable(["decoder", "expert"])
    trainable = {n for n, p in vla.named_parameters() if p.requires_grad}
    assert any(".lora_a." in n for n in trainable) and any(".expert.attention.wq.lora_b." in n for n in trainable)
    assert "vlm.layers.0.attention.wq.weight" not in trainable and "vlm.tok_embeddings.weight" not in trainable
    assert "expert.heads.action_in_proj.weight" in trainable

    for module in vla.modules():
        if isinstance(module, LoRALinear):
            module.lora_b.weight.data.normal_(0, 0.05)
    before = _velocity(vla, batch)
    exported = vla.vlm_state_dict()
    assert not any(".lora_" in k or ".expert." in k for k in exported)
    assert merge_lora(vla) > 0
    torch.testing.assert_close(_velocity(vla, batch), before, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(exported["layers.0.attention.wq.weight"], vla.vlm.layers[0].attention.wq.weight)


def test_vlm_exports_in_hf_naming_and_loads_back(tmp_path):
    vla = tiny_vla()
    hf_state = vla.vlm_hf_state_dict()
    assert "model.language_model.layers.0.self_attn.q_proj.weight" in hf_state
    assert not any("expert" in k for k in hf_state)
    other = tiny_vla(fusion="late")
    torch.manual_seed(1)
    other.init_weights()
    other.load_vlm_hf_state_dict(hf_state)
    batch = make_batch(vla)
    prefix_a, prefix_b = vla._prefix(batch), other._prefix(batch)
    torch.testing.assert_close(vla._run_vlm(prefix_a), other._run_vlm(prefix_b))
    # The same dict is what save_hf_checkpoint writes for a plain Qwen3-VL.
    save_hf_checkpoint(other.vlm, tmp_path)
    assert (tmp_path / "config.json").is_file()
    with pytest.raises(ValueError, match="unknown keys"):
        vla.load_vlm_hf_state_dict({**hf_state, "model.extra.weight": torch.zeros(1)})
