"""Flow matching in the openpi convention: training times, x_t and the velocity target."""

import torch

from torchtitan_vla.models.action_expert.flow import noisy_actions, sample_time, velocity_target


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
