"""The loss contract: counts from the batch, per-sample sums from the model, one normaliser."""

from __future__ import annotations

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.vla import ForwardOptions, LossSums
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.loss import LOSS_TERMS, LossWeights, global_counts, normalized_loss, per_sample_counts


def test_normalized_loss_divides_by_global_counts_and_keeps_empty_terms_in_the_graph():
    text = torch.tensor([4.0, 2.0], requires_grad=True)
    action = torch.tensor([3.0, 0.0], requires_grad=True)
    subtask = torch.tensor([0.0, 5.0])
    fast = torch.tensor([1.0, 5.0], requires_grad=True)
    counts = torch.tensor([3.0, 0.0, 2.0, 4.0], dtype=torch.float64)  # no action target on any rank this step
    loss = normalized_loss(LossSums(text=text, action=action, subtask=subtask, fast=fast), counts,
                           LossWeights(text=0.5, action=2.0, subtask=3.0, fast=0.25))
    # an empty count is clamped to 1
    assert loss.item() == pytest.approx(0.5 * 6 / 3 + 2.0 * 3.0 + 3.0 * 5 / 2 + 0.25 * 6 / 4)
    loss.backward()
    assert action.grad is not None  # the empty term still takes part in backward (same graph on every rank)


def test_target_counts_come_from_the_batch_before_forward():
    vla = tiny_vla()
    batch = make_batch(vla, batch_size=2, padding=(0, 2), action_dims=(3, 2), steps=(4, 2))
    counts = per_sample_counts(batch)
    assert counts[2].tolist() == (batch.labels != -100).sum(dim=1).tolist()  # robot rows' text: subtasks
    assert counts[0].tolist() == [0, 0]
    horizon = vla.expert_cfg.action_horizon
    assert counts[1].tolist() == [3 * min(4, horizon), 2 * min(2, horizon)]
    assert global_counts([counts, counts], None).tolist() == [2 * float(counts[i].sum()) for i in range(len(LOSS_TERMS))]
    batch.has_actions = torch.tensor([True, False])  # a web row's text is web text
    web = per_sample_counts(batch)
    assert web[0].tolist() == [0, counts[2][1]] and web[2].tolist() == [counts[2][0], 0]


def test_model_sums_are_zero_exactly_where_the_batch_counts_no_target():
    vla = tiny_vla()
    batch = make_batch(vla, batch_size=2)
    batch.has_actions = torch.tensor([True, False])
    batch.labels[1] = -100
    sums = vla(batch, options=ForwardOptions())
    counts = per_sample_counts(batch)
    for i, term in enumerate(LOSS_TERMS):
        per_sample = getattr(sums, term)
        assert per_sample.shape == (2,)
        assert bool(per_sample[counts[i] == 0].eq(0).all()) and bool(per_sample[counts[i] > 0].gt(0).all())


def test_forward_backward_without_backward_leaves_no_gradient():
    vla = tiny_vla()
    batch = make_batch(vla, batch_size=2)
    with torch.no_grad():
        losses = forward_backward(vla, [batch], weights=LossWeights(), options=ForwardOptions(), dp_mesh=None,
                                  backward=False)
    assert all(p.grad is None for p in vla.parameters())
    assert losses.counts.tolist() == per_sample_counts(batch).sum(dim=1).tolist()
    assert losses.by_source[1].sum() == losses.counts[0] and losses.by_source[3].sum() == losses.counts[1]
    assert losses.sums.tolist() == [losses.by_source[2 * i].sum().item() for i in range(len(LOSS_TERMS))]
