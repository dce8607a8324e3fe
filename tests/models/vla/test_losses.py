"""Training loss sums: masking of padding, web samples, knowledge insulation, given noise and times."""

import dataclasses

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.action_expert.flow import noisy_actions, velocity_target
from torchtitan_vla.models.vla import ForwardOptions, LossSums


def _loss_and_grads(vla, batch, seed=0):
    vla.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same noise and times
    sums = vla(batch)
    (sums.action.sum() + sums.text.sum() + sums.subtask.sum()).backward()
    grads = {n: p.grad.clone() for n, p in vla.named_parameters() if p.grad is not None}
    return sums, grads


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_padded_dims_and_steps_change_neither_loss_nor_gradients(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla, action_dims=(3, 2), steps=(4, 2))
    sums, grads = _loss_and_grads(vla, batch)
    garbage = batch.actions.clone()
    pad = ~(batch.action_dim_mask[:, None, :] & ~batch.action_is_pad[:, :, None])
    garbage[pad] = torch.randn(int(pad.sum())) * 100
    garbage[0, 0, -1] = float("nan")
    sums2, grads2 = _loss_and_grads(vla, dataclasses.replace(batch, actions=garbage))
    assert torch.equal(sums.action, sums2.action)
    assert grads.keys() == grads2.keys()
    for name in grads:
        assert torch.equal(grads[name], grads2[name]), name


def test_loss_sums_are_per_sample_float32():
    vla = tiny_vla()
    sums = vla(make_batch(vla, batch_size=3, padding=(0, 1, 2)))
    assert isinstance(sums, LossSums)
    assert (sums.text == 0).all()  # robot samples' labels are subtask text
    for term in (sums.subtask, sums.action):
        assert term.shape == (3,) and term.dtype == torch.float32 and (term > 0).all()


def test_given_noise_and_time_are_used_as_is():
    """Same noise and times -> identical sums, whatever the RNG; the flow loss is the squared error of the
    velocity at exactly that x_t and t."""
    vla = tiny_vla()
    batch = make_batch(vla, action_dims=(6, 6))
    noise, time = torch.randn(2, 4, 6), torch.tensor([0.2, 0.9])
    torch.manual_seed(1)
    first = vla(batch, noise=noise, time=time)
    torch.manual_seed(2)
    second = vla(batch, noise=noise, time=time)
    assert torch.equal(first.action, second.action) and torch.equal(first.subtask, second.subtask)
    velocity = vla.velocity(vla.observe(batch), noisy_actions(batch.actions, noise, time), time)
    expected = (velocity - velocity_target(batch.actions, noise)).square().sum(dim=(1, 2))
    torch.testing.assert_close(first.action, expected)
    drawn = vla(batch)
    assert not torch.equal(drawn.action, first.action)


def test_noise_and_time_of_wrong_shape_are_rejected():
    vla = tiny_vla()
    batch = make_batch(vla)
    with pytest.raises(ValueError, match=r"noise has shape \(2, 3, 6\), expected \(2, 4, 6\)"):
        vla(batch, noise=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"time has shape \(3,\), expected \(2,\)"):
        vla(batch, time=torch.rand(3))


def test_flow_times_come_from_the_options():
    """A distribution that puts every time at t = 1 (pure noise) gives the loss of x_t = noise."""
    vla = tiny_vla()
    batch = make_batch(vla)
    noise = torch.randn(2, 4, 6)
    at_one = ForwardOptions(flow_time=dataclasses.replace(ForwardOptions().flow_time, scale=0.0, offset=1.0))
    torch.testing.assert_close(vla(batch, noise=noise, options=at_one).action,
                               vla(batch, noise=noise, time=torch.ones(2)).action)


def test_web_samples_contribute_no_flow_loss():
    vla = tiny_vla()
    batch = make_batch(vla)
    sums = vla(dataclasses.replace(batch, has_actions=torch.tensor([True, False])))
    assert sums.action[0] > 0 and sums.action[1] == 0


def test_robot_samples_without_text_labels():
    vla = tiny_vla()
    batch = make_batch(vla)
    sums = vla(dataclasses.replace(batch, labels=torch.full_like(batch.labels, -100)))
    assert (sums.text == 0).all() and (sums.subtask == 0).all()
    sums.action.sum().backward()  # a graph exists for both sums


def _flow_grads(vla, batch, options):
    """Gradients of the flow loss alone: (VLM parameters', expert parameters') total absolute gradient."""
    vla.zero_grad(set_to_none=True)
    vla(dataclasses.replace(batch, labels=torch.full_like(batch.labels, -100)), options=options).action.sum().backward()
    expert_ids = {id(p) for p in vla.components()["expert"].parameters()}

    def total(params):
        return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)

    return total(p for p in vla.parameters() if id(p) not in expert_ids), total(vla.components()["expert"].parameters())


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_knowledge_insulation_through_the_options(fusion):
    """One model, two calls: insulation is a per-call option (a curriculum stage turns it on), and with it
    the flow loss trains the expert but sends exactly zero gradient into the VLM."""
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla)
    vlm, expert = _flow_grads(vla, batch, ForwardOptions(knowledge_insulation=True))
    assert vlm == 0.0 and expert > 0.0
    vlm, expert = _flow_grads(vla, batch, ForwardOptions(knowledge_insulation=False))
    assert vlm > 0.0 and expert > 0.0


def test_vlm_only_batches_skip_the_expert():
    vla = tiny_vla()
    batch = make_batch(vla)
    sums = vla(dataclasses.replace(batch, has_actions=torch.zeros(2, dtype=torch.bool), state=None))
    (sums.text.sum() + sums.action.sum()).backward()
    assert (sums.action == 0).all() and (sums.text > 0).all()
    assert all(p.grad is None for p in vla.components()["expert"].parameters())


def test_expert_disabled_is_a_plain_vlm():
    vla = tiny_vla(enable=False)
    batch = make_batch(vla)
    sums = vla(batch)
    assert vla.expert is None and "expert" not in vla.components()
    assert (sums.action == 0).all() and (sums.subtask > 0).all()
    with pytest.raises(ValueError, match="action_expert.enable"):
        vla.sample_actions(batch)
