"""Tokenizer loading, special tokens and the generated debug tokenizer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from torchtitan_vla.processing import tokenizer as tokenizer_module
from torchtitan_vla.processing.tokenizer import (
    QWEN_SPECIAL_TOKENS,
    REQUIRED_SPECIAL_TOKENS,
    Tokenizer,
    build_debug_tokenizer,
)


@pytest.fixture(scope="module")
def debug_tokenizer_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    build_debug_tokenizer(path)
    return path


def test_round_trip_with_special_tokens(debug_tokenizer_path):
    tok = Tokenizer.from_file(debug_tokenizer_path)
    text = (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Move to the red square, "
        "then pick up 12.5 blocks!\n\tUnknown wörds & 中文 <0.5 seconds><|im_end|>\n"
    )
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    specials = [
        tok.im_start_id,
        tok.vision_start_id,
        tok.image_pad_id,
        tok.image_pad_id,
        tok.vision_end_id,
        tok.im_end_id,
    ]
    assert [i for i in ids if i >= tok.endoftext_id] == specials
    assert tok.decode(ids, skip_special_tokens=True) == text.replace("<|im_start|>", "").replace(
        "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>", ""
    ).replace("<|im_end|>", "")


def test_each_special_token_is_one_id(debug_tokenizer_path):
    tok = Tokenizer.from_file(debug_tokenizer_path)
    for token in QWEN_SPECIAL_TOKENS:
        assert tok.encode(token) == [tok.token_to_id(token)]
    assert tok.encode("<|image_pad|>") == [tok.image_pad_id]
    assert tok.encode("<|video_pad|>") == [tok.video_pad_id]
    assert tok.eos_id == tok.im_end_id and tok.pad_id == tok.endoftext_id


def test_debug_tokenizer_fits_the_debug_flavor(debug_tokenizer_path):
    from torchtitan_vla.models.qwen3_vl.args import FLAVORS

    tok = Tokenizer.from_file(debug_tokenizer_path)
    debug = FLAVORS["debug"]
    assert tok.vocab_size < 1024 and tok.vocab_size <= debug.text.vocab_size
    assert tok.image_pad_id == debug.image_token_id
    assert tok.video_pad_id == debug.video_token_id
    assert tok.vision_start_id == debug.vision_start_token_id
    assert tok.vision_end_id == debug.vision_end_token_id
    assert tok.endoftext_id == debug.bos_token_id and tok.im_end_id == debug.eos_token_id
    # The toy world's prompts are covered by learned words, not spelled out byte by byte.
    assert len(tok.encode("move to the red square.")) == 6


def test_debug_tokenizer_is_deterministic(tmp_path, debug_tokenizer_path):
    again = tmp_path / "again.json"
    build_debug_tokenizer(again)
    assert again.read_bytes() == debug_tokenizer_path.read_bytes()
    # Another process with another hash seed writes the same bytes.
    other = tmp_path / "other.json"
    # The module is run from its file so the child skips the model package's (torch) imports.
    code = "import runpy, sys; runpy.run_path(sys.argv[1])['build_debug_tokenizer'](sys.argv[2])"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", code, tokenizer_module.__file__, str(other)], check=True, env=env)
    assert other.read_bytes() == debug_tokenizer_path.read_bytes()


def test_extra_words_become_single_tokens(tmp_path):
    tok = build_debug_tokenizer(tmp_path / "t.json", extra_words=["zebra"] * 4)
    assert len(tok.encode("zebra")) == 1 and tok.vocab_size < 1024


def test_loading_from_a_checkpoint_folder(debug_tokenizer_path):
    assert (
        Tokenizer.from_file(debug_tokenizer_path.parent).vocab_size
        == Tokenizer.from_file(debug_tokenizer_path).vocab_size
    )


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        Tokenizer.from_file(tmp_path / "nowhere.json")


def test_malformed_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="could not be parsed"):
        Tokenizer.from_file(bad)


@pytest.mark.parametrize("missing", REQUIRED_SPECIAL_TOKENS)
def test_missing_special_token_is_a_clear_error(tmp_path, debug_tokenizer_path, missing):
    content = json.loads(debug_tokenizer_path.read_text())
    content["added_tokens"] = [t for t in content["added_tokens"] if t["content"] != missing]
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(missing)):
        Tokenizer.from_file(path)
