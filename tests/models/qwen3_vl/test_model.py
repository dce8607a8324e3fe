"""Flavors, meta-device construction and initialisation, attention backends, packed sequences."""

from __future__ import annotations

import pytest
import torch

from tests.models.qwen3_vl.oracle import pixels, text, tiny_hf_config
from torchtitan_vla.models.qwen3_vl import FLAVORS, Qwen3VLArgs, Qwen3VLModel
from torchtitan_vla.models.qwen3_vl.masks import bidirectional_mask, build_mask, causal_mask

# Released parameter counts (millions, tied weights once), from the transformers classes on meta.
RELEASED_MILLIONS = {"2B": 2127.5, "4B": 4437.8, "8B": 8767.1, "32B": 33357.4, "30B-A3B": 31070.8,
                     "235B-A22B": 235670.0}


@pytest.mark.parametrize("flavor", sorted(RELEASED_MILLIONS))
def test_released_parameter_counts(flavor):
    with torch.device("meta"):
        model = Qwen3VLModel(FLAVORS[flavor])
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == RELEASED_MILLIONS[flavor]


def test_hf_config_round_trip():
    for flavor in ("debug", "2B", "30B-A3B"):
        args = FLAVORS[flavor]
        assert Qwen3VLArgs.from_hf_config(args.to_hf_config()) == args


def test_invalid_args_are_rejected():
    cfg = tiny_hf_config()
    cfg["text_config"]["rope_scaling"]["mrope_section"] = [4, 4, 4]
    with pytest.raises(ValueError, match="mrope_section"):
        Qwen3VLArgs.from_hf_config(cfg)
    cfg = tiny_hf_config()
    cfg["vision_config"]["deepstack_visual_indexes"] = [0, 7]
    with pytest.raises(ValueError, match=r"\[7\] are outside the ViT depth 3"):
        Qwen3VLArgs.from_hf_config(cfg)


def _debug_batch(args):
    pv, thw = pixels([(1, 4, 4)])
    img = [args.vision_start_token_id] + [args.image_token_id] * 4 + [args.vision_end_token_id]
    return torch.tensor([text(3) + img + text(4, 1)]), pv, thw


def test_meta_construction_then_init_weights_trains():
    args = FLAVORS["debug"]
    with torch.device("meta"):
        model = Qwen3VLModel(args)
    model.to_empty(device="cpu")
    model.init_weights(buffer_device="cpu")
    fresh = Qwen3VLModel(args)
    # RoPE buffers are recomputed, not left as garbage from to_empty.
    assert torch.equal(model.rope.inv_freq, fresh.rope.inv_freq)
    assert torch.equal(model.vision_encoder.rotary.inv_freq, fresh.vision_encoder.rotary.inv_freq)
    ids, pv, thw = _debug_batch(args)
    logits = model(ids, pixel_values=pv, image_grid_thw=thw)
    assert logits.shape == (1, ids.shape[1], args.text.vocab_size) and torch.isfinite(logits).all()
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tied_flavor_stays_tied_after_meta_init():
    args = FLAVORS["debug"]
    args = args.replace(text=type(args.text)(**{**vars(args.text), "tie_word_embeddings": True}))
    with torch.device("meta"):
        model = Qwen3VLModel(args)
    model.to_empty(device="cpu")
    model.init_weights()
    assert model.lm_head.weight is model.tok_embeddings.weight


def test_flex_backend_needs_cuda():
    model = Qwen3VLModel(FLAVORS["debug"], attention_backend="flex")
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        model(torch.tensor([text(5)]))
    with pytest.raises(ValueError, match="unknown attention backend"):
        Qwen3VLModel(FLAVORS["debug"], attention_backend="xformers")


def test_packed_documents_equal_separate_forwards():
    """Two documents packed in one row (positions and attention restart at the boundary) give the logits
    each document gets on its own."""
    torch.manual_seed(0)
    args = FLAVORS["debug"]
    model = Qwen3VLModel(args).eval()
    model.init_weights()
    ids_a, pv, thw = _debug_batch(args)
    ids_b = torch.tensor([text(6, 5)])
    packed = torch.cat((ids_a, ids_b), dim=1)
    doc_ids = torch.tensor([[0] * ids_a.shape[1] + [1] * ids_b.shape[1]])
    with torch.no_grad():
        together = model(packed, pixel_values=pv, image_grid_thw=thw, doc_ids=doc_ids)
        alone_a = model(ids_a, pixel_values=pv, image_grid_thw=thw)
        alone_b = model(ids_b)
    torch.testing.assert_close(together, torch.cat((alone_a, alone_b), dim=1), atol=1e-5, rtol=0)


def test_masks_respect_padding_documents_and_causality():
    padding = torch.tensor([[0, 1, 1, 1]], dtype=torch.bool)
    docs = torch.tensor([[0, 0, 1, 1]])
    mask = causal_mask(padding, docs)[0, 0]
    assert mask.tolist() == [[True, False, False, False],  # a padding query only sees itself (no NaN)
                             [False, True, False, False],
                             [False, False, True, False],
                             [False, False, True, True]]
    decode = causal_mask(torch.ones(1, 5, dtype=torch.bool), q_len=1)
    assert decode.shape == (1, 1, 1, 5) and decode.all()


def test_per_sample_causality_matches_the_causal_and_bidirectional_masks():
    """causal=(B,) picks, per sample, exactly the causal or the bidirectional mask (padding rules kept)."""
    padding = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    per_sample = build_mask(padding, causal=torch.tensor([True, False, True]))
    causal, bidirectional = causal_mask(padding), bidirectional_mask(padding)
    assert torch.equal(per_sample[0], causal[0]) and torch.equal(per_sample[2], causal[2])
    assert torch.equal(per_sample[1], bidirectional[1])
    assert not torch.equal(causal[1], bidirectional[1])
