"""Robot samples with FAST action tokens: ``[prompt | "Action: " FAST tokens EOS]``, loss on the tokens
and EOS only, the segment flagged for the expert's mask, and the same through a collated batch."""

import numpy as np
import pytest

from tests.data.helpers import make_config
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.robot import RobotSampleBuilder
from torchtitan_vla.data.sample import Collator
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.fast_vocab import FastActions, FastVocab


def _builder(reader, tokenizer, fast=None, horizon=5):
    prompts = PromptBuilder(tokenizer, make_config([]).data)
    return RobotSampleBuilder(reader, prompts, action_horizon=horizon, max_action_dim=8, max_state_dim=8,
                              image_size=32, fast=fast)


@pytest.fixture(scope="module")
def fast(tokenizer):
    chunks = np.cumsum(np.random.default_rng(0).normal(0, 0.3, (200, 5, 4)), axis=1)
    fitted = FastTokenizer.fit(chunks, vocab_size=160)
    return FastActions(fitted, FastVocab.for_tokenizer(fitted.vocab_size, 1024, tokenizer))


def test_robot_sample_ends_with_its_fast_segment(lerobot_roots, tokenizer, fast):
    reader = LeRobotReader(lerobot_roots["v3.0"])
    plain = _builder(reader, tokenizer).build(1, 2, 0, np.random.default_rng(0))
    sample = _builder(reader, tokenizer, fast).build(1, 2, 0, np.random.default_rng(0))
    chunk_tokens = fast.tokens(sample.actions[:, :4])
    lead = tokenizer.encode("Action: ")
    n = len(plain)
    assert sample.input_ids[:n].tolist() == plain.input_ids.tolist()
    assert sample.input_ids[n:].tolist() == lead + chunk_tokens + [tokenizer.eos_id]
    assert sample.fast_mask.tolist() == [False] * n + [True] * (len(sample) - n)
    targets = sample.labels[sample.labels != -100].tolist()
    assert targets == chunk_tokens + [tokenizer.eos_id]  # "Action: " is given, never a target
    assert (sample.labels[n + len(lead) - 1:-1] == sample.input_ids[n + len(lead):]).all()
    decoded, ok = fast.decode(chunk_tokens)
    assert ok and np.abs(decoded - sample.actions[:, :4]).max() < 0.1

    batch = Collator(tokenizer.pad_id, 256, 5, 8, 8, num_sources=1, pad_to_max_seq_len=False)([plain, sample])
    assert not batch.fast_mask[0].any() and batch.fast_mask[1].tolist() == sample.fast_mask.tolist()


def test_tokenizer_of_another_chunk_shape_is_refused(lerobot_roots, tokenizer, fast):
    with pytest.raises(ValueError, match="encodes 5 x 4 chunks, this source gives 6 x 4"):
        _builder(LeRobotReader(lerobot_roots["v3.0"]), tokenizer, fast, horizon=6)
