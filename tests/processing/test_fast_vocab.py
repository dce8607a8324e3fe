"""Where FAST tokens live in the VLM's vocabulary (processing/fast_vocab.py)."""

import numpy as np
import pytest

from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.fast_vocab import FastActions, FastVocab
from torchtitan_vla.processing.tokenizer import QWEN_SPECIAL_TOKENS, build_debug_tokenizer

QWEN_ROWS, QWEN_FIRST_SPECIAL, QWEN_USED = 151936, 151643, 151669


def test_qwen3_vl_layout_fills_unused_rows_then_skips_the_special_tokens():
    """Qwen3-VL: 151936 embedding rows, ids 151643-151668 special: the 267 never-used rows come first, then
    the rarest BPE merges right below the special tokens; no special id is ever a FAST token."""
    vocab = FastVocab(1024, QWEN_ROWS, set(range(QWEN_FIRST_SPECIAL, QWEN_USED)))
    ids = vocab.token_ids.tolist()
    unused = QWEN_ROWS - QWEN_USED
    assert ids[:unused] == list(range(QWEN_ROWS - 1, QWEN_USED - 1, -1))
    assert ids[unused:] == list(range(QWEN_FIRST_SPECIAL - 1, QWEN_FIRST_SPECIAL - 1 - (1024 - unused), -1))
    assert vocab.to_fast([ids[0], ids[500], QWEN_FIRST_SPECIAL, 0]) == [0, 500, -1, -1]


def test_debug_tokenizer_keeps_its_special_and_prompt_tokens(tmp_path):
    tokenizer = build_debug_tokenizer(tmp_path / "tokenizer.json")
    vocab = FastVocab.for_tokenizer(128, 1024, tokenizer)
    ids = set(vocab.token_ids.tolist())
    assert len(ids) == 128 and max(ids) == 1023
    assert not ids & {tokenizer.token_to_id(t) for t in QWEN_SPECIAL_TOKENS}
    assert not ids & set(tokenizer.encode("Action: move to the red square."))


def test_vocabulary_too_small_is_an_error():
    with pytest.raises(ValueError, match="does not fit in 20 embedding rows beside 5 reserved"):
        FastVocab(16, 20, set(range(5)))


def test_fast_actions_round_trip_through_vlm_ids(tmp_path):
    rng = np.random.default_rng(0)
    chunks = np.cumsum(rng.normal(0, 0.2, (200, 6, 2)), axis=1)
    fast = FastTokenizer.fit(chunks, vocab_size=64)
    actions = FastActions(fast, FastVocab.for_tokenizer(fast.vocab_size, 1024, build_debug_tokenizer(tmp_path / "t.json")))
    tokens = actions.tokens(chunks[0])
    assert set(tokens) <= set(actions.vocab.token_ids.tolist())
    decoded, ok = actions.decode(tokens)
    assert ok and np.abs(decoded - chunks[0]).max() < 0.5 / fast.scale * np.sqrt(6)
    _, ok = actions.decode(tokens + [5])  # a non-FAST id (a text token) in the stream
    assert not ok
