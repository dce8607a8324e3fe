"""The VLM of a model with FAST tokens exports as an ordinary Qwen3-VL checkpoint: same shapes, loadable by
transformers, and its logits over a FAST segment are ours (the FAST ids are rows it already has)."""

import numpy as np
import torch

from torchtitan_vla.config import JobConfig
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.fast_vocab import FastActions, FastVocab
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.train.export import export_hf


def test_exported_vlm_reads_fast_tokens_in_transformers(tmp_path):
    import transformers

    tokenizer = build_debug_tokenizer(tmp_path / "tokenizer.json")
    chunks = np.cumsum(np.random.default_rng(0).normal(0, 0.2, (128, 4, 2)), axis=1)
    fast_tokenizer = FastTokenizer.fit(chunks, vocab_size=48)
    fast = FastActions(fast_tokenizer, FastVocab.for_tokenizer(fast_tokenizer.vocab_size, 1024, tokenizer))
    torch.manual_seed(0)
    vla = VLA.build_debug(action_horizon=4, max_action_dim=2).eval()
    export_hf(vla, JobConfig(), tmp_path / "hf", str(tmp_path / "tokenizer.json"))

    hf = transformers.Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "hf").float().eval()
    assert hf.config.text_config.vocab_size == vla.vlm.args.text.vocab_size == 1024  # no rows appended
    # A chunk's tokens and the top FAST ids, which are rows no text token had (1017-1023).
    segment = fast.tokens(chunks[0]) + fast.vocab.token_ids[:8].tolist()
    assert max(segment) == 1023
    ids = torch.tensor([tokenizer.encode("Action: ") + segment + [tokenizer.eos_id]])
    with torch.no_grad():
        ours = vla.vlm(ids)
        theirs = hf(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
