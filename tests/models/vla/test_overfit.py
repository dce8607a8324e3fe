"""A tiny VLA memorises a handful of (image, instruction, state, chunk) examples."""

import math

import pytest
import torch

from tests.models.vla.helpers import make_batch, overfit_vla
from torchtitan_vla.models.action_expert.flow import valid_action_mask


def _counts(batch):
    """Labelled tokens and valid action elements: the normalisers, taken from the batch."""
    return (batch.labels != -100).sum(), valid_action_mask(batch.action_dim_mask, batch.action_is_pad,
                                                           batch.has_actions).sum()


def _mean_flow_loss(vla, batch, draws=4):
    with torch.no_grad():
        torch.manual_seed(123)  # the same times and noise before and after training
        total = 0.0
        for _ in range(draws):
            total += float(vla(batch).action.sum() / _counts(batch)[1])
        return total / draws


def _overfit(fusion, time_conditioning, steps):
    vla = overfit_vla(fusion=fusion, time_conditioning=time_conditioning, action_horizon=4, max_action_dim=4,
                      max_state_dim=3, hidden_size=64)
    batch = make_batch(vla, batch_size=4, padding=(0, 1, 2, 0), action_dims=(3, 2, 4, 3), seed=1)
    start = _mean_flow_loss(vla, batch)
    optimizer = torch.optim.Adam(vla.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    text_tokens, action_elements = _counts(batch)
    for _ in range(steps):
        sums = vla(batch)
        loss = sums.action.sum() / action_elements + (sums.text + sums.subtask).sum() / text_tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    end = _mean_flow_loss(vla, batch)
    sampled = vla.sample_actions(batch, num_steps=10, noise=torch.randn(4, 4, 4))
    real = batch.action_dim_mask[:, None, :].expand_as(sampled)
    error = (sampled - batch.actions).abs()[real].mean()
    scale = batch.actions.abs()[real].mean()
    return end / start, float(error / scale)


@pytest.mark.parametrize("fusion,time_conditioning", [("joint", "mlp"), ("late", "adarms")])
def test_flow_loss_falls_quickly(fusion, time_conditioning):
    ratio, relative_error = _overfit(fusion, time_conditioning, steps=250)
    assert ratio < 0.1, ratio
    assert relative_error < 0.35, relative_error


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["joint", "late"])
@pytest.mark.parametrize("time_conditioning", ["mlp", "adarms"])
def test_tiny_vla_memorises_its_examples(fusion, time_conditioning):
    ratio, relative_error = _overfit(fusion, time_conditioning, steps=1000)
    assert ratio < 0.01, ratio
    assert relative_error < 0.1, relative_error
