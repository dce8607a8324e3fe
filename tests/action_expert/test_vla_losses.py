"""Training losses: masking of padding, web samples, knowledge insulation, VLM-only mode."""

import pytest
import torch
from ae_helpers import make_batch, single_thread, tiny_vla  # noqa: F401

from torchtitan_vla.models.action_expert.flow import noisy_actions, sample_time, velocity_target

pytestmark = pytest.mark.usefixtures("single_thread")


def _loss_and_grads(vla, batch, seed=0):
    vla.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same noise and times
    out = vla(batch)
    (out["action_loss_sum"] + out["text_loss_sum"]).backward()
    grads = {n: p.grad.clone() for n, p in vla.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_padded_dims_and_steps_change_neither_loss_nor_gradients(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla, action_dims=(3, 2), steps=(4, 2))
    out, grads = _loss_and_grads(vla, batch)
    assert out["action_elements"] == 4 * 3 + 2 * 2
    garbage = batch["actions"].clone()
    pad = ~(batch["action_dim_mask"][:, None, :] & ~batch["action_is_pad"][:, :, None])
    garbage[pad] = torch.randn(int(pad.sum())) * 100
    garbage[0, 0, -1] = float("nan")
    out2, grads2 = _loss_and_grads(vla, dict(batch, actions=garbage))
    assert torch.equal(out["action_loss_sum"], out2["action_loss_sum"])
    assert grads.keys() == grads2.keys()
    for name in grads:
        assert torch.equal(grads[name], grads2[name]), name


def test_web_samples_contribute_no_flow_loss():
    vla = tiny_vla()
    batch = make_batch(vla)
    robot_only = dict(batch, has_actions=torch.tensor([True, False]))
    out = vla(robot_only)
    assert out["action_elements_per_sample"].tolist() == [4 * 3, 0]
    assert out["action_loss_per_sample"][1] == 0


def test_robot_samples_without_text_labels():
    vla = tiny_vla()
    batch = make_batch(vla)
    out = vla(dict(batch, labels=torch.full_like(batch["labels"], -100)))
    assert out["text_tokens"] == 0 and out["text_loss_sum"] == 0
    out["action_loss_sum"].backward()  # a graph exists for both sums


def _vlm_grads_from_flow_loss(vla, batch):
    vla.zero_grad(set_to_none=True)
    out = vla(dict(batch, labels=torch.full_like(batch["labels"], -100)))
    out["action_loss_sum"].backward()
    expert_ids = {id(p) for p in vla.components()["expert"].parameters()}
    return [p.grad for p in vla.parameters() if id(p) not in expert_ids], [
        p.grad for p in vla.components()["expert"].parameters()
    ]


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_knowledge_insulation_stops_flow_gradient_at_the_vlm(fusion):
    for insulate in (True, False):
        vla = tiny_vla(fusion=fusion, knowledge_insulation=insulate)
        batch = make_batch(vla)
        vlm_grads, expert_grads = _vlm_grads_from_flow_loss(vla, batch)
        vlm_norm = sum(float(g.abs().sum()) for g in vlm_grads if g is not None)
        assert any(g is not None and g.abs().sum() > 0 for g in expert_grads)
        if insulate:
            assert vlm_norm == 0.0
        else:
            assert vlm_norm > 0.0


def test_vlm_only_batches_skip_the_expert():
    vla = tiny_vla()
    batch = make_batch(vla)
    out = vla(dict(batch, has_actions=torch.zeros(2, dtype=torch.bool)))
    (out["text_loss_sum"] + out["action_loss_sum"]).backward()
    assert out["action_elements"] == 0
    assert all(p.grad is None for p in vla.components()["expert"].parameters())
    assert out["text_tokens"] > 0


def test_expert_disabled_is_a_plain_vlm():
    vla = tiny_vla(enable=False)
    batch = make_batch(vla)
    out = vla(batch)
    assert vla.expert is None and "expert" not in vla.components()
    assert out["action_elements"] == 0 and out["text_tokens"] > 0
    with pytest.raises(ValueError, match="action_expert.enable"):
        vla.sample_actions(batch)


def test_flow_matching_convention():
    torch.manual_seed(0)
    t = sample_time(20000, torch.device("cpu"))
    assert 0.001 <= t.min() and t.max() <= 1.0
    # Beta(1.5, 1) has mean 0.6: noisy times (t near 1) are over-sampled.
    assert abs(float(t.mean()) - (0.999 * 0.6 + 0.001)) < 0.01
    actions, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    ones, zeros = torch.ones(3), torch.zeros(3)
    torch.testing.assert_close(noisy_actions(actions, noise, ones), noise)
    torch.testing.assert_close(noisy_actions(actions, noise, zeros), actions)
    eps = 1e-3
    slope = (noisy_actions(actions, noise, ones * (0.5 + eps)) - noisy_actions(actions, noise, ones * 0.5)) / eps
    torch.testing.assert_close(slope, velocity_target(actions, noise), rtol=1e-3, atol=1e-3)
