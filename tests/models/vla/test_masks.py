"""Attention structure of the VLA: what may see what (pi0 masks), in both fusions."""

import dataclasses

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla

FUSIONS = ["joint", "late"]


def _run(vla, batch, x_t, t):
    return vla.hidden_and_velocity(vla.observe(batch), x_t, t)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_suffix_changes_no_prefix_hidden_state(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla)
    x_t = torch.randn(2, 4, 6)
    t = torch.tensor([0.3, 0.8])
    hidden, velocity = _run(vla, batch, x_t, t)
    other = dataclasses.replace(batch, state=torch.randn_like(batch.state))
    hidden2, velocity2 = _run(vla, other, torch.randn_like(x_t), torch.tensor([0.9, 0.1]))
    assert torch.equal(hidden, hidden2)
    assert not torch.allclose(velocity, velocity2)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_action_chunk_is_bidirectional(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla)
    x_t = torch.randn(2, 4, 6)
    t = torch.tensor([0.5, 0.5])
    _, velocity = _run(vla, batch, x_t, t)
    changed = x_t.clone()
    changed[:, -1] += 1.0  # the LAST action token: earlier tokens see it only with bidirectional attention
    _, velocity2 = _run(vla, batch, changed, t)
    for step in range(3):
        assert not torch.allclose(velocity[:, step], velocity2[:, step])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_padding_tokens_are_invisible(fusion):
    vla = tiny_vla(fusion=fusion)
    batch = make_batch(vla, padding=(0, 2))
    x_t = torch.randn(2, 4, 6)
    t = torch.tensor([0.5, 0.5])
    hidden, velocity = _run(vla, batch, x_t, t)
    ids = batch.input_ids.clone()
    ids[~batch.attention_mask] = 77
    hidden2, velocity2 = _run(vla, dataclasses.replace(batch, input_ids=ids), x_t, t)
    valid = batch.attention_mask
    torch.testing.assert_close(hidden[valid], hidden2[valid], rtol=0, atol=1e-6)
    torch.testing.assert_close(velocity, velocity2, rtol=0, atol=1e-6)


def _hidden_before_and_after_changing_the_last_token(vla, batch):
    x_t, t = torch.randn(2, 4, 6), torch.tensor([0.5, 0.5])
    hidden, _ = _run(vla, batch, x_t, t)
    ids = batch.input_ids.clone()
    ids[:, -1] = (ids[:, -1] + 1) % 900
    hidden2, _ = _run(vla, dataclasses.replace(batch, input_ids=ids), x_t, t)
    return hidden, hidden2


def _prompts(batch):
    """The batch's rows as robot prompts: no text target (a labelled subtask stays causal, see below)."""
    return dataclasses.replace(batch, labels=torch.full_like(batch.labels, -100))


def test_prefix_attention_causal_or_bidirectional():
    changed_first_token = {}
    for mode in ("causal", "bidirectional"):
        vla = tiny_vla(prefix_attention=mode)
        hidden, hidden2 = _hidden_before_and_after_changing_the_last_token(vla, _prompts(make_batch(vla, padding=(0,))))
        changed_first_token[mode] = not torch.allclose(hidden[:, 0], hidden2[:, 0])
    assert changed_first_token == {"causal": False, "bidirectional": True}


def test_bidirectional_prefix_keeps_web_samples_causal():
    """In a mixed batch only robot samples see later prefix tokens; a web sample's text loss stays honest."""
    vla = tiny_vla(prefix_attention="bidirectional")
    batch = _prompts(make_batch(vla, padding=(0,)))
    batch.has_actions = torch.tensor([True, False])
    hidden, hidden2 = _hidden_before_and_after_changing_the_last_token(vla, batch)
    assert not torch.allclose(hidden[0, 0], hidden2[0, 0])
    torch.testing.assert_close(hidden[1, :-1], hidden2[1, :-1], rtol=0, atol=0)


def test_suffix_positions_continue_after_the_prefix():
    vla = tiny_vla()
    batch = make_batch(vla, padding=(0, 2))
    observation = vla.observe(batch)
    pos, valid = batch.position_ids, batch.attention_mask
    for b in range(2):
        assert observation.next_position[b] == pos[:, b][:, valid[b]].max() + 1
    num_suffix = vla.expert.num_suffix_tokens
    expected = (observation.next_position[:, None] + torch.arange(num_suffix)).expand(3, -1, -1)
    cos, _ = vla.vlm.rotary(expected)
    torch.testing.assert_close(vla.encode_prefix(observation).expert_inputs.cos, cos)


def test_joint_vla_keeps_the_vlm_forward():
    """The joint layers still run as plain decoder layers: Qwen3VLModel.forward gives the VLA's text loss."""
    vla = tiny_vla()
    batch = make_batch(vla)
    logits = vla.vlm(batch.input_ids, batch.attention_mask, batch.pixel_values, batch.image_grid_thw,
                     position_ids=batch.position_ids)
    labels = batch.labels
    expected = torch.nn.functional.cross_entropy(logits[labels != -100], labels[labels != -100], reduction="sum")
    sums = vla(dataclasses.replace(batch, has_actions=torch.zeros(2, dtype=torch.bool)))
    torch.testing.assert_close(sums.text.sum(), expected)
    assert (sums.action == 0).all()


def test_prefix_lm_keeps_the_predicted_subtask_causal():
    """Under pi0's bidirectional prefix a robot sample's prompt tokens see each other, but none sees the
    subtask text after it (its targets): each subtask token sees the prompt and the text before it."""
    vla = tiny_vla(prefix_attention="bidirectional")
    batch = make_batch(vla, padding=(0, 0))
    labels = torch.full_like(batch.labels, -100)
    labels[0, 7:10] = batch.input_ids[0, 8:11]  # row 0: tokens 8..10 are its subtask; row 1 has no text target
    mask = vla._prefix(dataclasses.replace(batch, labels=labels)).mask[:, 0]
    assert mask[1].all()  # no target: the whole prompt is bidirectional
    assert mask[0, :8, :8].all() and not mask[0, :8, 8:].any()  # the prompt never sees the subtask
    assert mask[0, 8:, :8].all() and torch.equal(mask[0, 8:11, 8:11], torch.ones(3, 3, dtype=torch.bool).tril())
