"""pi0-FAST decoding always gives a finite chunk of the right shape and flags what it had to repair."""

import dataclasses

import numpy as np
import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index
from torchtitan_vla.models.vla.fast_decoding import chunks_from_streams, decode_fast_actions
from torchtitan_vla.models.vla.generate import greedy_decode
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.fast_vocab import FastActions, FastVocab

EOS = 1005  # a reserved id of the debug layout (<|im_end|>)


@pytest.fixture(scope="module")
def fast():
    rng = np.random.default_rng(0)
    tokenizer = FastTokenizer.fit(np.cumsum(rng.normal(0, 0.2, (300, 4, 3)), axis=1), vocab_size=48)
    return FastActions(tokenizer, FastVocab(tokenizer.vocab_size, 1024, set(range(1003, 1017))))


def test_adversarial_streams_give_valid_chunks(fast):
    ids = fast.vocab.token_ids.tolist()
    good = fast.tokens(np.zeros((4, 3)) + 0.3)
    rng = np.random.default_rng(1)
    streams = {
        "valid": (good + [EOS], True),
        "all_eos": ([EOS] * 6, False),
        "no_eos": (good, False),
        "out_of_range": ([5, 10**9, -3] + good + [EOS], False),
        "too_many_coefficients": ([ids[0]] * 40 + [EOS], False),
        "empty": ([], False),
        "random": (rng.choice(ids + [EOS, 7], 30).tolist(), None),
    }
    out = chunks_from_streams(fast, [s for s, _ in streams.values()], EOS)
    assert out.chunks.shape == (len(streams), 4, 3) and torch.isfinite(out.chunks).all()
    for ok, (name, (_, expected)) in zip(out.ok, streams.items()):
        if expected is not None:
            assert ok == expected, name
    torch.testing.assert_close(out.chunks[0], torch.from_numpy(fast.decode(good)[0]))


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_decoding_an_untrained_vla(fast, fusion):
    """Constrained to FAST ids + EOS and capped at H * D + 1 tokens; the cached decode equals the uncached."""
    vla = tiny_vla(fusion=fusion, action_horizon=4, max_action_dim=6)
    batch = dataclasses.replace(make_batch(vla), actions=None, action_is_pad=None)
    cached = decode_fast_actions(vla, batch, fast, EOS)
    full = decode_fast_actions(vla, batch, fast, EOS, use_cache=False)
    assert cached.chunks.shape == (2, 4, 3) and torch.isfinite(cached.chunks).all()
    assert all(n <= 4 * 3 + 1 for n in cached.num_tokens)
    assert cached.num_tokens == full.num_tokens and cached.ok == full.ok
    torch.testing.assert_close(cached.chunks, full.chunks)


def _with_tokens(vla, batch, extra: torch.Tensor, opened: int):
    """``batch`` (unpadded rows) followed by ``extra`` (B, T) tokens, as training sees it: the last ``opened``
    prompt tokens (its ``"Action: "``) and ``extra`` form the FAST segment, ``extra`` its labels."""
    ids = torch.cat([batch.input_ids, extra], dim=1)
    valid = torch.ones_like(ids, dtype=torch.bool)
    position_ids, _ = get_rope_index(ids, batch.image_grid_thw, None, valid, image_token_id=vla.vlm.args.image_token_id,
                                     spatial_merge_size=vla.vlm.args.vision.spatial_merge_size)
    labels = torch.full_like(ids, -100)
    start = batch.input_ids.shape[1] - 1  # the prompt's last token predicts the first generated one
    labels[:, start:-1] = extra
    fast_mask = torch.zeros_like(ids, dtype=torch.bool)
    fast_mask[:, start + 1 - opened:] = True
    return dataclasses.replace(batch, input_ids=ids, labels=labels, attention_mask=valid, position_ids=position_ids,
                               doc_ids=torch.zeros_like(ids), fast_mask=fast_mask)


@pytest.mark.parametrize("prefix_attention", ["causal", "bidirectional"])
def test_decoding_continues_what_training_teaches(fast, prefix_attention):
    """Greedy decoding after the opened ``"Action: "`` is exactly the argmax the FAST loss trains, token by
    token: each generated token is the constrained argmax of the training forward over prompt + stream.
    (A decoder that ignored the opened segment, as the expert does, predicted from the wrong position.)"""
    vla = tiny_vla(prefix_attention=prefix_attention)
    prompt = dataclasses.replace(make_batch(vla, padding=(0, 0)), actions=None, action_is_pad=None)
    opened = 2
    fast_mask = torch.zeros_like(prompt.input_ids, dtype=torch.bool)
    fast_mask[:, -opened:] = True
    prompt = dataclasses.replace(prompt, labels=torch.full_like(prompt.labels, -100), fast_mask=fast_mask)
    stream = greedy_decode(vla, prompt, 6, allowed_token_ids=fast.vocab.token_ids, stop_token_ids=[EOS],
                           pad_token_id=EOS)
    trained = _with_tokens(vla, prompt, stream.ids, opened)
    with torch.no_grad():
        observation = vla.observe(trained)
        logits = vla.vlm.lm_head(vla.vlm.run_layers(observation.h, observation.cos, observation.sin, observation.mask,
                                                    observation.visual_mask, observation.deepstack))
    allowed = torch.cat([fast.vocab.token_ids, torch.tensor([EOS])])
    start = prompt.input_ids.shape[1] - 1
    argmax = allowed[logits[:, start:-1, allowed].argmax(-1)]
    for row, n in enumerate(stream.lengths.tolist()):
        assert argmax[row, :n].tolist() == stream.ids[row, :n].tolist()
    assert stream.cache is None  # the expert never reads FAST tokens
