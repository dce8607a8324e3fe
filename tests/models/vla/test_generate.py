"""greedy_decode: the KV cache changes nothing but the cost; constraints and per-row stops hold; actions
sampled from its cache are the actions of a prompt that contains the generated text."""

import dataclasses

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index
from torchtitan_vla.models.vla.generate import greedy_decode

EXPERTS = [dict(fusion="joint"), dict(fusion="late"), dict(fusion="joint", prefix_attention="bidirectional")]
IDS = ["joint", "late", "joint-prefix-lm"]


def _appended(vla, batch, generated):
    """The training layout: each row's prompt directly followed by its generated tokens, right-padded."""
    rows, texts = [], []
    for i in range(batch.num_samples):
        prompt = batch.input_ids[i][batch.attention_mask[i]]
        texts.append((len(prompt), generated.ids[i, : generated.lengths[i]]))
        rows.append(torch.cat((prompt, texts[-1][1])))
    length = max(len(r) for r in rows)
    ids = torch.stack([torch.nn.functional.pad(r, (0, length - len(r))) for r in rows])
    valid = torch.stack([torch.arange(length) < len(r) for r in rows])
    labels = torch.full_like(ids, -100)  # the text is a target, as a subtask annotation is in training
    for i, (start, text) in enumerate(texts):
        labels[i, start - 1 : start - 1 + len(text)] = text
    args = vla.vlm.args
    positions, _ = get_rope_index(ids, batch.image_grid_thw, None, valid, image_token_id=args.image_token_id,
                                  spatial_merge_size=args.vision.spatial_merge_size)
    return dataclasses.replace(batch, input_ids=ids, attention_mask=valid, position_ids=positions,
                               labels=labels, doc_ids=torch.zeros_like(ids))


@pytest.mark.parametrize("expert", EXPERTS, ids=IDS)
def test_cached_decoding_equals_full_recompute_and_conditions_the_actions(expert):
    vla = tiny_vla(**expert)
    batch = make_batch(vla, padding=(0, 2))
    batch = dataclasses.replace(batch, labels=torch.full_like(batch.labels, -100))  # a prompt, as served
    cached = greedy_decode(vla, batch, 5)
    full = greedy_decode(vla, batch, 5, use_cache=False)
    assert cached.ids.shape == (2, 5)
    assert cached.ids.tolist() == full.ids.tolist()
    noise = torch.randn(2, 4, 6)
    from_cache = vla.sample_actions(batch, num_steps=2, noise=noise, prefix=cached.cache)
    from_full = vla.sample_actions(batch, num_steps=2, noise=noise, prefix=full.cache)
    with_text = vla.sample_actions(_appended(vla, batch, cached), num_steps=2, noise=noise)
    without_text = vla.sample_actions(batch, num_steps=2, noise=noise)
    torch.testing.assert_close(from_cache, from_full, rtol=0, atol=1e-5)
    torch.testing.assert_close(from_cache, with_text, rtol=0, atol=1e-5)
    assert (from_cache - without_text).abs().max() > 1e-4  # the generated text does condition the actions


def test_allowed_tokens_constrain_every_step():
    vla = tiny_vla()
    batch = make_batch(vla)
    free = greedy_decode(vla, batch, 4, use_cache=True)
    allowed = torch.tensor([7, 11, 13])
    out = greedy_decode(vla, batch, 4, allowed_token_ids=allowed, stop_token_ids=(3,))
    produced = [t for row, n in zip(out.ids.tolist(), out.lengths.tolist()) for t in row[:n]]
    assert len(produced) >= 4 and set(produced) <= {3, 7, 11, 13}
    assert not set(free.ids.flatten().tolist()) <= {3, 7, 11, 13}  # the constraint is what kept them there
    with pytest.raises(ValueError, match="outside the vocabulary"):
        greedy_decode(vla, batch, 4, allowed_token_ids=torch.tensor([10**7]))


def test_each_row_stops_at_its_own_stop_token_and_is_padded_after():
    vla = tiny_vla()
    batch = make_batch(vla, padding=(0, 2))
    free = greedy_decode(vla, batch, 6)
    # a token row 0 produces at step 1 and row 1 never produces in these 6 steps
    stop = next(t for t in free.ids[0, 1:].tolist() if t not in free.ids[1].tolist() and t != free.ids[0, 0])
    first = free.ids[0].tolist().index(stop)
    out = greedy_decode(vla, batch, 6, stop_token_ids=(stop,), pad_token_id=-1)
    assert out.lengths.tolist() == [first + 1, 6]
    assert out.ids[0, : first + 1].tolist() == free.ids[0, : first + 1].tolist()
    assert out.ids[0, first + 1:].tolist() == [-1] * (5 - first)
    assert out.ids[1].tolist() == free.ids[1].tolist()  # row 1 is unaffected by row 0's stop
    # the expert's cache holds the stop token but none of the pads after it
    assert out.cache.valid.sum(dim=1).tolist() == (batch.attention_mask.sum(dim=1) + out.lengths).tolist()
