"""cc12m and OBELICS through ``datasets``: read back, skips of unavailable images, packing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader, write_cc12m_shards, write_obelics_parquet
from torchtitan_vla.models.qwen3_vl.masks import causal_mask
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index
from torchtitan_vla.tools.synthetic_data import synthetic_captions

FETCHED: list[str] = []


def fetch_from_fixture_folder(url: str) -> bytes:
    """A fetch function for the tests: ``test://NAME`` -> bytes of the file NAME in $DATA_TEST_IMAGES."""
    FETCHED.append(url)
    with open(os.path.join(os.environ["DATA_TEST_IMAGES"], url.removeprefix("test://")), "rb") as f:
        return f.read()


def _take(loader, n):
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n:
            return batches
    return batches


def _documents(batch, row):
    ids, labels, docs = batch.input_ids[row], batch.labels[row], batch.doc_ids[row]
    for d in range(int(docs.max()) + 1):
        sel = docs == d
        yield ids[sel], labels[sel], batch.position_ids[:, row, sel]


def test_cc12m_captions_read_back_as_training_targets(cc12m_root, captions, tokenizer):
    cfg = make_config([DataSource(name="cc", kind="cc12m", path=cc12m_root)], packing=False)
    batches = _take(build_dataloader(cfg, tokenizer, 0, 1), 4)
    targets = []
    for batch in batches:
        for row in range(len(batch.input_ids)):
            labels = batch.labels[row]
            targets.append(tokenizer.decode(labels[labels != -100].tolist()))
            # 32x32 pixels: 2x2 patches of 16, merged 2x2 into one token
            assert int((batch.input_ids[row] == tokenizer.image_pad_id).sum()) == 1
        assert batch.image_grid_thw.tolist() == [[1, 2, 2]] * 4
        assert not batch.has_actions.any() and not batch.actions.any()
    assert targets == [f"{caption}<|im_end|>" for _, caption in captions]


def test_obelics_embedded_local_and_url_images(tmp_path, tokenizer, monkeypatch):
    image = synthetic_captions(1, size=32)[0][0]
    (tmp_path / "img").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "a.jpg")
    monkeypatch.setenv("DATA_TEST_IMAGES", str(tmp_path / "img"))
    docs = [
        {"images": [None, image], "texts": ["embedded", None]},
        {"images": [None, "test://a.jpg"], "texts": ["from a url", None]},
        {"images": [None, "test://missing.jpg"], "texts": ["url that fails", None]},
        {"images": [None, b"garbage"], "texts": ["corrupt bytes", None]},
    ]
    folder = tmp_path / "ob"
    write_obelics_parquet(str(folder / "part-0.parquet"), docs)
    write_obelics_parquet(str(folder / "part-1.parquet"), [{"images": [image, None], "texts": [None, "local file"]}],
                          embed_images=False)
    source = DataSource(name="ob", kind="obelics", path=str(folder))

    def read(src):
        cfg = make_config([src], packing=False)
        cfg.training.local_batch_size = 3
        loader = build_dataloader(cfg, tokenizer, 0, 1)
        batch = _take(loader, 1)[0]
        texts = [tokenizer.decode(ids[mask].tolist()) for ids, mask in zip(batch.input_ids, batch.attention_mask)]
        return [t.split("<|vision_start|>")[0] for t in texts], loader.skipped_per_source["ob"], batch

    texts, skipped, _ = read(source)  # no fetch function: both URL rows are unavailable
    # The local-file doc starts with its image; after it the second epoch begins.
    assert texts == ["embedded", "", "embedded"] and skipped == 3
    source.image_fetch_fn = f"{__name__}:fetch_from_fixture_folder"
    texts, skipped, batch = read(source)
    assert texts == ["embedded", "from a url", ""] and skipped == 2  # the failing URL and the garbage bytes
    assert "test://a.jpg" in FETCHED
    assert batch.image_grid_thw.shape[0] == batch.input_ids.eq(tokenizer.vision_start_id).sum()


def test_corrupt_image_skips_or_stops_in_strict_mode(tmp_path, tokenizer):
    items = synthetic_captions(6, size=32)
    items[2] = (b"\xff\xd8 truncated jpeg", "broken")
    write_cc12m_shards(str(tmp_path), items, shard_size=3)
    src = DataSource(name="cc", kind="cc12m", path=str(tmp_path))
    loader = build_dataloader(make_config([src], packing=False), tokenizer, 0, 1)
    batch = _take(loader, 1)[0]
    assert batch.skipped.tolist() == [1] and loader.skipped_per_source == {"cc": 1}
    strict = build_dataloader(make_config([src], packing=False, strict=True), tokenizer, 0, 1)
    with pytest.raises(RuntimeError, match="corrupt image"):
        _take(strict, 2)


def test_missing_web_path_fails_at_startup(tokenizer):
    for kind in ("cc12m", "obelics"):
        with pytest.raises(FileNotFoundError, match="/nonexistent/web"):
            build_dataloader(make_config([DataSource(name="w", kind=kind, path="/nonexistent/web")]), tokenizer, 0, 1)


def test_packing_keeps_documents_apart(obelics_root, tokenizer):
    cfg = make_config([DataSource(name="ob", kind="obelics", path=obelics_root)], max_seq_len=128)
    batch = _take(build_dataloader(cfg, tokenizer, 0, 1), 1)[0]
    assert (batch.doc_ids.max(1).values >= 1).all(), "several documents per packed row"
    mask = causal_mask(batch.attention_mask, batch.doc_ids)[:, 0]
    same_doc = batch.doc_ids[:, :, None] == batch.doc_ids[:, None, :]
    valid = batch.attention_mask[:, :, None] & batch.attention_mask[:, None, :]
    assert not (mask & valid & ~same_doc).any(), "a token attends across documents"
    images = iter(batch.image_grid_thw)
    for row in range(batch.input_ids.shape[0]):
        for ids, labels, positions in _documents(batch, row):
            assert positions[:, 0].tolist() == [0, 0, 0], "positions restart per document"
            grids = [next(images) for _ in range(int((ids == tokenizer.vision_start_id).sum()))]
            alone, _ = get_rope_index(ids[None], torch.stack(grids) if grids else None,
                                      image_token_id=tokenizer.image_pad_id)
            assert torch.equal(alone[:, 0], positions), "positions equal those of the document on its own"
            assert labels[-1] == -100, "no target crosses into the next document"
            text = labels != -100
            assert torch.equal(labels[:-1][text[:-1]], ids[1:][text[:-1]]), "labels are the next tokens"


def test_long_documents_are_truncated_before_an_image(tmp_path, tokenizer):
    image = synthetic_captions(1, size=32)[0][0]
    long_text = "the red square is left of the blue circle. " * 40
    write_obelics_parquet(str(tmp_path / "a.parquet"), [{"images": [None, image], "texts": [long_text, None]}] * 2)
    cfg = make_config([DataSource(name="ob", kind="obelics", path=str(tmp_path))], max_seq_len=64)
    batch = _take(build_dataloader(cfg, tokenizer, 0, 1), 1)[0]
    assert batch.attention_mask.all() and batch.pixel_values is None
    assert np.all(batch.labels[:, -1].numpy() == -100)


def test_shard_ranges_and_globs_select_files(cc12m_root, tokenizer):
    from torchtitan_vla.data.web import expand_braces

    assert expand_braces("a/s-{08..10}.tar") == ["a/s-08.tar", "a/s-09.tar", "a/s-10.tar"]
    src = DataSource(name="cc", kind="cc12m", path=os.path.join(cc12m_root, "cc12m-train-{0000..0001}.tar"))
    batch = _take(build_dataloader(make_config([src], packing=False), tokenizer, 0, 1), 2)
    captions = [tokenizer.decode(b.labels[r][b.labels[r] != -100].tolist()) for b in batch for r in range(4)]
    assert all(f"number {i}." in c for i, c in enumerate(captions))  # shards 0 and 1: items 0..7


def test_fewer_shards_than_workers_is_a_clear_error(tmp_path, tokenizer):
    write_cc12m_shards(str(tmp_path), synthetic_captions(4, size=32), shard_size=4)  # one shard
    cfg = make_config([DataSource(name="cc", kind="cc12m", path=str(tmp_path))], num_workers=2)
    with pytest.raises(ValueError, match="'cc' has 1 shard"):
        build_dataloader(cfg, tokenizer, 0, 1)
