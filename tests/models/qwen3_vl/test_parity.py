"""Logit and generation parity of the native Qwen3-VL with transformers (tiny random models, fp32)."""

from __future__ import annotations

import pytest
import torch

from tests.models.qwen3_vl.oracle import (
    VIDEO_ID,
    image_run,
    mm_token_type_ids,
    pixels,
    text,
    tiny_hf_model,
)
from torchtitan_vla.models.qwen3_vl import Qwen3VLArgs, Qwen3VLModel
from torchtitan_vla.models.qwen3_vl.generate import generate
from torchtitan_vla.models.qwen3_vl.hf_checkpoint import load_hf_weights

TOL = 1e-4


def _pair(moe: bool = False, tie: bool = False):
    hf = tiny_hf_model(moe=moe, tie=tie)
    ours = Qwen3VLModel(Qwen3VLArgs.from_hf_config(hf.config.to_dict())).eval()
    load_hf_weights(ours, hf.state_dict())
    return hf, ours


@pytest.fixture(scope="module")
def dense():
    return _pair()


def _compare(hf, ours, ids, attention_mask=None, **vision):
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=attention_mask, mm_token_type_ids=mm_token_type_ids(ids), **vision)
        out = ours(ids, attention_mask=attention_mask, **vision)
    assert out.shape == ref.logits.shape
    valid = slice(None) if attention_mask is None else attention_mask.bool()
    diff = (out - ref.logits)[valid].abs().max().item()
    assert diff < TOL, f"max |logit difference| {diff}"
    return out


def test_text_only(dense):
    _compare(*dense, torch.tensor([text(12)]))


def test_one_image(dense):
    grid = (1, 4, 6)
    pv, thw = pixels([grid])
    ids = torch.tensor([text(4) + image_run(grid) + text(5, 1)])
    _compare(*dense, ids, pixel_values=pv, image_grid_thw=thw)


def test_two_images_of_different_sizes(dense):
    g1, g2 = (1, 4, 6), (1, 8, 4)
    pv, thw = pixels([g1, g2])
    ids = torch.tensor([text(3) + image_run(g1) + text(4, 1) + image_run(g2) + text(5, 2)])
    _compare(*dense, ids, pixel_values=pv, image_grid_thw=thw)


def test_two_frame_video(dense):
    grid = (2, 4, 4)
    pv, thw = pixels([grid])
    frame = image_run((1, 4, 4), VIDEO_ID)
    ids = torch.tensor([text(3) + text(2, 1) + frame + text(2, 2) + frame + text(4, 3)])
    _compare(*dense, ids, pixel_values_videos=pv, video_grid_thw=thw)


def test_image_and_video_together(dense):
    pv, thw = pixels([(1, 4, 6)])
    pvv, vthw = pixels([(2, 4, 4)], seed=1)
    frame = image_run((1, 4, 4), VIDEO_ID)
    ids = torch.tensor([text(2) + frame + image_run((1, 4, 6)) + text(2, 1) + frame + text(3, 2)])
    _compare(*dense, ids, pixel_values=pv, image_grid_thw=thw, pixel_values_videos=pvv, video_grid_thw=vthw)


def test_left_and_right_padded_batch(dense):
    grid = (1, 4, 4)
    pv, thw = pixels([grid])
    long_row = text(3) + image_run(grid) + text(6, 1)
    short_row = text(7, 2)
    pad = len(long_row) - len(short_row)
    mask = torch.tensor([[1] * len(long_row), [0] * pad + [1] * len(short_row)])
    ids = torch.tensor([long_row, [0] * pad + short_row])
    _compare(*dense, ids, attention_mask=mask, pixel_values=pv, image_grid_thw=thw)  # left padding
    mask = torch.tensor([[1] * len(long_row), [1] * len(short_row) + [0] * pad])
    ids = torch.tensor([long_row, short_row + [0] * pad])
    _compare(*dense, ids, attention_mask=mask, pixel_values=pv, image_grid_thw=thw)  # right padding


def test_moe():
    hf, ours = _pair(moe=True)
    grid = (1, 4, 6)
    pv, thw = pixels([grid])
    ids = torch.tensor([text(4) + image_run(grid) + text(6, 1)])
    _compare(hf, ours, ids, pixel_values=pv, image_grid_thw=thw)


def test_tied_lm_head():
    hf, ours = _pair(tie=True)
    assert ours.lm_head.weight is ours.tok_embeddings.weight
    _compare(hf, ours, torch.tensor([text(10)]))


def test_greedy_generation_matches_transformers(dense):
    """8 greedy tokens for a left-padded batch: one prompt with an image, one shorter text-only prompt."""
    hf, ours = dense
    grid = (1, 4, 6)
    pv, thw = pixels([grid])
    long_row, short_row = text(4) + image_run(grid) + text(5, 1), text(7, 2)
    pad = len(long_row) - len(short_row)
    ids = torch.tensor([long_row, [0] * pad + short_row])
    mask = torch.tensor([[1] * len(long_row), [0] * pad + [1] * len(short_row)])
    ref = hf.generate(input_ids=ids, attention_mask=mask, pixel_values=pv, image_grid_thw=thw,
                      mm_token_type_ids=mm_token_type_ids(ids), max_new_tokens=8, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
    out = generate(ours, ids, mask, pixel_values=pv, image_grid_thw=thw, max_new_tokens=8)
    assert out.tolist() == ref[:, ids.shape[1]:].tolist()


def test_kv_cache_generation_equals_full_recompute(dense):
    """Each cached decode step gives the token a full forward over prompt + generated tokens gives."""
    _, ours = dense
    grid = (1, 4, 4)
    pv, thw = pixels([grid])
    ids = torch.tensor([text(3) + image_run(grid) + text(4, 1)])
    out = generate(ours, ids, pixel_values=pv, image_grid_thw=thw, max_new_tokens=6)
    pos, delta = ours.position_ids(ids, image_grid_thw=thw)
    full = torch.cat((ids, out), dim=1)
    n = ids.shape[1]
    decoded = (torch.arange(n, full.shape[1]) + delta).expand(3, 1, -1)
    with torch.no_grad():
        logits = ours(full, pixel_values=pv, image_grid_thw=thw, position_ids=torch.cat((pos, decoded), dim=2))
    assert logits[0, n - 1 : -1].argmax(-1).tolist() == out[0].tolist()
