"""MRoPE position ids against transformers' get_rope_index, and the packed-sequence extension."""

from __future__ import annotations

import pytest
import torch

from tests.models.qwen3_vl.oracle import IMAGE_ID, VIDEO_ID, image_run, mm_token_type_ids, text, tiny_hf_model
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index


@pytest.fixture(scope="module")
def hf_model():
    return tiny_hf_model(n_layers=1).model


def _ours(ids, images=None, videos=None, mask=None, doc_ids=None):
    return get_rope_index(ids, images, videos, mask, image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
                          doc_ids=doc_ids)


def test_matches_transformers_for_images_videos_and_padding(hf_model):
    images = torch.tensor([[1, 4, 6], [1, 8, 4]])
    videos = torch.tensor([[2, 4, 4]])
    frame = image_run((1, 4, 4), VIDEO_ID)
    row0 = text(2) + image_run((1, 4, 6)) + text(3) + frame + text(2, 1) + frame + text(1)
    row1 = text(4) + image_run((1, 8, 4)) + text(5)
    pad = len(row0) - len(row1)
    for ids, mask in (
        (torch.tensor([row0, [0] * pad + row1]), torch.tensor([[1] * len(row0), [0] * pad + [1] * len(row1)])),
        (torch.tensor([row0, row1 + [0] * pad]), torch.tensor([[1] * len(row0), [1] * len(row1) + [0] * pad])),
    ):
        ref_pos, ref_delta = hf_model.get_rope_index(ids, mm_token_type_ids(ids) * mask, images, videos.clone(), mask)
        pos, delta = _ours(ids, images, videos, mask)
        assert torch.equal(pos, ref_pos) and torch.equal(delta, ref_delta.view(-1, 1))


def test_text_only_positions_skip_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos, delta = _ours(torch.ones(2, 5, dtype=torch.long), mask=mask)
    assert pos[0].tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]] and delta.flatten().tolist() == [0, 0]


def test_packed_documents_restart_positions():
    images = torch.tensor([[1, 4, 6], [1, 4, 4]])
    doc_a = text(3) + image_run((1, 4, 6)) + text(2)
    doc_b = text(2) + image_run((1, 4, 4)) + text(4)
    packed, _ = _ours(torch.tensor([doc_a + doc_b]), images,
                      doc_ids=torch.tensor([[0] * len(doc_a) + [1] * len(doc_b)]))
    alone_a, _ = _ours(torch.tensor([doc_a]), images[:1])
    alone_b, _ = _ours(torch.tensor([doc_b]), images[1:])
    assert torch.equal(packed, torch.cat((alone_a, alone_b), dim=2))


def test_grid_and_placeholder_mismatch_is_an_error():
    ids = torch.tensor([text(2) + image_run((1, 4, 4)) + text(2)])
    with pytest.raises(ValueError, match="describes 2 image frames but the prompts hold placeholders for only 1"):
        _ours(ids, torch.tensor([[1, 4, 4], [1, 4, 4]]))
    with pytest.raises(ValueError, match="a run of 4 image placeholder tokens ends inside a grid that needs 6"):
        _ours(ids, torch.tensor([[1, 4, 6]]))
    with pytest.raises(ValueError, match="more video placeholder tokens than video_grid_thw"):
        _ours(torch.tensor([image_run((1, 4, 4), VIDEO_ID) * 3]), videos=torch.tensor([[2, 4, 4]]))
