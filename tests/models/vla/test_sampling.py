"""sample_actions: the prefix KV cache changes nothing but the cost; Euler integration conventions."""

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla


@pytest.mark.parametrize(
    "expert",
    [dict(fusion="joint"), dict(fusion="late"), dict(fusion="joint", time_conditioning="adarms", state_mode="discrete"),
     dict(fusion="late", time_conditioning="adarms")],
    ids=["joint", "late", "joint-adarms-discrete", "late-adarms"],
)
def test_cached_sampling_equals_uncached(expert):
    vla = tiny_vla(**expert)
    # adaRMS gates start at zero (the expert is the identity): perturb them so the check has teeth.
    for name, param in vla.named_parameters():
        if "modulation" in name:
            param.data.normal_(0, 0.1)
    batch = make_batch(vla, padding=(0, 2))
    noise = torch.randn(2, 4, 6)
    cached = vla.sample_actions(batch, num_steps=4, noise=noise)
    uncached = vla.sample_actions(batch, num_steps=4, noise=noise, use_cache=False)
    assert cached.shape == (2, 4, 6)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=1e-5)


def test_sampling_integrates_from_noise_with_euler_steps():
    """One Euler step from t=1: x = noise - v(noise, 1)."""
    vla = tiny_vla()
    batch = make_batch(vla)
    noise = torch.randn(2, 4, 6)
    velocity = vla.velocity(vla.observe(batch), noise, torch.ones(2))
    one_step = vla.sample_actions(batch, num_steps=1, noise=noise)
    mask = batch.action_dim_mask[:, None, :]
    torch.testing.assert_close(one_step, (noise - velocity) * mask)


def test_padded_action_dims_come_back_zero():
    vla = tiny_vla()
    batch = make_batch(vla, action_dims=(3, 2))
    actions = vla.sample_actions(batch, num_steps=2)
    assert (actions[0, :, 3:] == 0).all() and (actions[1, :, 2:] == 0).all()
    assert (actions[0, :, :3] != 0).all()


def test_noise_of_wrong_shape_is_rejected():
    vla = tiny_vla()
    with pytest.raises(ValueError, match="noise has shape"):
        vla.sample_actions(make_batch(vla), noise=torch.randn(2, 5, 6))


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_cached_velocity_equals_the_full_pass(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla, padding=(0, 2))
    observation = vla.observe(batch)
    x_t, t = torch.randn(2, 4, 6), torch.tensor([0.4, 0.9])
    with torch.no_grad():
        cached = vla.cached_velocity(vla.encode_prefix(observation), x_t, t)
        full = vla.velocity(observation, x_t, t)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)
