"""pi0-FAST decoding always gives a finite chunk of the right shape and flags what it had to repair."""

import dataclasses

import numpy as np
import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.vla.fast_decoding import chunks_from_streams, decode_fast_actions
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
