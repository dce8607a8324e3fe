"""FAST action tokens in the VLM: the expert never sees them, the loss splits text / FAST, and knowledge
insulation trains the VLM on FAST tokens only."""

import dataclasses

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.vla import ForwardOptions
from torchtitan_vla.train.loss import LOSS_TERMS, per_sample_counts

FAST_LEN = 3


def _with_fast(batch, seed=0):
    """The batch with the last FAST_LEN valid tokens of every row as its FAST segment (random ids)."""
    gen = torch.Generator().manual_seed(seed)
    ids, fast = batch.input_ids.clone(), torch.zeros_like(batch.attention_mask)
    for i, n in enumerate(batch.attention_mask.sum(dim=1).tolist()):
        fast[i, n - FAST_LEN:n] = True
        ids[i, n - FAST_LEN:n] = torch.randint(900, 1000, (FAST_LEN,), generator=gen)
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = torch.where(fast[:, 1:], ids[:, 1:], -100)
    return dataclasses.replace(batch, input_ids=ids, labels=labels, fast_mask=fast)


def _without_fast(batch):
    """The same rows with the FAST segment turned into padding."""
    return dataclasses.replace(batch, attention_mask=batch.attention_mask & ~batch.fast_mask, fast_mask=None)


@pytest.mark.parametrize("prefix_attention", ["causal", "bidirectional"])
@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_expert_never_sees_fast_tokens(fusion, prefix_attention):
    """The velocity (and every non-FAST prefix hidden state) is the same with the FAST segment, with other
    FAST ids, and with the segment removed: neither the expert nor an earlier prefix token reads it,
    and the suffix positions start where they start at inference."""
    vla = tiny_vla(fusion=fusion, prefix_attention=prefix_attention)
    batch = _with_fast(make_batch(vla, text_len=8))
    x_t, t = torch.randn(2, 4, 6), torch.tensor([0.3, 0.7])
    hidden, velocity = vla.hidden_and_velocity(vla.observe(batch), x_t, t)
    other_ids = _with_fast(batch, seed=1)
    assert not torch.equal(other_ids.input_ids, batch.input_ids)
    hidden2, velocity2 = vla.hidden_and_velocity(vla.observe(other_ids), x_t, t)
    hidden3, velocity3 = vla.hidden_and_velocity(vla.observe(_without_fast(batch)), x_t, t)
    seen = batch.attention_mask & ~batch.fast_mask
    for h, v in ((hidden2, velocity2), (hidden3, velocity3)):
        torch.testing.assert_close(v, velocity, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h[seen], hidden[seen], rtol=1e-5, atol=1e-6)
    # The FAST tokens themselves do read the prompt and each other causally: their states differ.
    assert not torch.allclose(hidden2[batch.fast_mask], hidden[batch.fast_mask])


def test_mask_rule_with_packed_web_rows():
    """A robot row with FAST tokens beside a web row packing two documents: the prefix mask keeps the
    documents apart and the FAST keys hidden from the expert and from earlier tokens."""
    vla = tiny_vla(prefix_attention="bidirectional")
    batch = _with_fast(make_batch(vla, text_len=8, padding=(0, 0)))
    doc_ids = torch.zeros_like(batch.input_ids)
    doc_ids[1, 8:] = 1
    fast = batch.fast_mask.clone()
    fast[1] = False
    batch = dataclasses.replace(batch, doc_ids=doc_ids, fast_mask=fast, has_actions=torch.tensor([True, False]))
    o = vla.observe(batch)
    mask = o.mask[:, 0]
    first_fast = int(fast[0].nonzero()[0])
    assert not mask[0, :first_fast, first_fast:].any()  # no earlier robot token sees a FAST key
    assert mask[0, first_fast + 1, first_fast] and not mask[0, first_fast, first_fast + 1]  # causal inside
    assert mask[0, 0, first_fast - 1]  # the rest of the robot prefix is bidirectional
    assert not mask[1, 8:, :8].any() and not mask[1, :8, 8:].any()  # packed web documents stay apart
    assert torch.equal(o.valid, batch.attention_mask & ~fast)  # what the expert may attend to


def test_loss_splits_text_and_fast_targets():
    vla = tiny_vla()
    plain = make_batch(vla, text_len=8)
    batch = _with_fast(plain)
    text_only = dataclasses.replace(batch, labels=torch.where(batch.fast_mask, -100, plain.labels), fast_mask=None)
    mixed = dataclasses.replace(batch, labels=torch.where(batch.fast_mask, batch.labels, plain.labels))
    torch.manual_seed(0)
    sums = vla(mixed)
    torch.manual_seed(0)
    reference = vla(dataclasses.replace(text_only, input_ids=batch.input_ids))
    # Robot rows: their other labelled tokens are subtask text, the FAST ones the discrete action loss.
    torch.testing.assert_close(sums.subtask, reference.subtask)
    assert (sums.fast > 0).all() and (sums.text == 0).all()
    counts = per_sample_counts(mixed)
    fast_targets = (mixed.labels != -100) & mixed.fast_mask
    assert counts[LOSS_TERMS.index("fast")].tolist() == fast_targets.sum(dim=1).double().tolist() == [FAST_LEN - 1] * 2
    other = ((mixed.labels != -100) & ~mixed.fast_mask).sum(1).double()
    assert counts[LOSS_TERMS.index("subtask")].tolist() == other.tolist() and other.min() > 0


def _grads(vla, batch, term, options):
    vla.zero_grad(set_to_none=True)
    getattr(vla(batch, options=options), term).sum().backward()
    expert_ids = {id(p) for p in vla.components()["expert"].parameters()}

    def total(expert):
        return sum(float(p.grad.abs().sum()) for p in vla.parameters()
                   if p.grad is not None and (id(p) in expert_ids) == expert)

    return total(False), total(True)


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_knowledge_insulation_as_published(fusion):
    """Insulated: the flow loss gives the VLM exactly zero gradient, the FAST loss a non-zero one (and the
    expert none, as it never sees the FAST tokens)."""
    vla = tiny_vla(fusion=fusion)
    batch = _with_fast(make_batch(vla, text_len=8))
    insulated = ForwardOptions(knowledge_insulation=True)
    vlm, expert = _grads(vla, batch, "action", insulated)
    assert vlm == 0.0 and expert > 0.0
    vlm, expert = _grads(vla, batch, "fast", insulated)
    assert vlm > 0.0 and expert == 0.0


def test_flow_off_runs_only_the_vlm():
    """pi0-FAST training (flow weight 0): the expert does not run, the FAST loss trains the VLM."""
    vla = tiny_vla()
    batch = _with_fast(make_batch(vla, text_len=8))
    sums = vla(batch, options=ForwardOptions(flow=False))
    sums.fast.sum().backward()
    assert (sums.action == 0).all() and (sums.fast > 0).all()
    assert all(p.grad is None for p in vla.components()["expert"].parameters())
