"""Damaged web data: truncated tar shards and parquet files, null OBELICS cells; each named, counted or refused."""

from __future__ import annotations

import logging
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader, write_cc12m_shards, write_obelics_parquet
from torchtitan_vla.data.web import CorruptShardError, UnavailableImage, tar_problem
from torchtitan_vla.tools.synthetic_data import synthetic_captions, synthetic_documents
from torchtitan_vla.utils.logging import logger


@pytest.fixture
def warnings_seen(caplog):
    """Warnings of the project logger (which does not propagate to pytest's handler once init_logging ran)."""
    caplog.set_level(logging.WARNING, logger=logger.name)
    direct = not logger.propagate
    if direct:
        logger.addHandler(caplog.handler)
    yield caplog
    if direct:
        logger.removeHandler(caplog.handler)


def _member_end(path: str, index: int) -> int:
    """Byte offset just past the data (and padding) of the tar member ``index``."""
    member = tarfile.open(path).getmembers()[index]
    return member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _cut(path: str, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _captions(loader, batches: int, tokenizer) -> list[str]:
    out = []
    for batch in loader:
        out += [tokenizer.decode(row[row != -100].tolist()) for row in batch.labels]
        if len(out) >= batches * len(batch.labels):
            return out
    return out


@pytest.fixture
def shards(tmp_path):
    """Three shards of four captions (items 0-3, 4-7, 8-11)."""
    return write_cc12m_shards(str(tmp_path / "cc"), synthetic_captions(12, size=32), shard_size=4)


def test_tar_check_sees_cuts_at_and_between_member_boundaries(shards):
    assert tar_problem(shards[0]) is None
    _cut(shards[0], _member_end(shards[0], 5))  # two whole examples (jpg, txt, json each), nothing after
    assert "do not end with the tar end-of-archive block" in tar_problem(shards[0])
    data_start = tarfile.open(shards[1]).getmembers()[3].offset_data
    _cut(shards[1], data_start + 100)  # inside the second jpg
    assert "is not a whole number of 512-byte tar blocks" in tar_problem(shards[1])
    _cut(shards[1], data_start + 512)  # inside it, at a block boundary
    assert "do not end with the tar end-of-archive block" in tar_problem(shards[1])


@pytest.mark.parametrize("which", [0, 1], ids=["first shard", "middle shard"])
def test_a_read_failure_inside_a_shard_names_the_shard(shards, which, tokenizer):
    # Damage the start-up check cannot see: after two whole examples, a member that claims 100 kB but holds
    # only the 1 kB of zeros that also pass for an end-of-archive block.
    _cut(shards[which], _member_end(shards[which], 5))
    header = tarfile.TarInfo(f"{4 * which + 2:09d}.jpg")
    header.size = 100_000
    with open(shards[which], "ab") as f:
        f.write(header.tobuf() + tarfile.NUL * 2 * tarfile.BLOCKSIZE)
    assert tar_problem(shards[which]) is None
    src = DataSource(name="cc", kind="cc12m", path=os.path.dirname(shards[0]))
    if which == 0:  # read while opening: datasets infers the columns from the first examples
        with pytest.raises(CorruptShardError, match=f"cc12m shard {shards[0]}: reading its first examples failed"):
            build_dataloader(make_config([src], packing=False), tokenizer, 0, 1)
        return
    loader = build_dataloader(make_config([src], packing=False), tokenizer, 0, 1)
    with pytest.raises(CorruptShardError, match=f"data source 'cc' .*: reading failed after shard {shards[1]}"):
        _captions(loader, 3, tokenizer)


@pytest.mark.parametrize("which", [0, 1], ids=["first shard", "middle shard"])
def test_truncated_tar_shard_is_skipped_and_counted_or_refused(shards, which, tokenizer, warnings_seen):
    # Cut at a member boundary: the tar reader of ``datasets`` would end the shard early without a word.
    _cut(shards[which], _member_end(shards[which], 5))
    src = DataSource(name="cc", kind="cc12m", path=os.path.dirname(shards[0]))
    with pytest.raises(CorruptShardError, match=f"cc12m shard {shards[which]}: truncated"):
        build_dataloader(make_config([src], packing=False, strict=True), tokenizer, 0, 1)

    loader = build_dataloader(make_config([src], packing=False), tokenizer, 0, 1)
    captions = _captions(loader, 2, tokenizer)
    numbers = [int(c.split("number ")[1].split(".")[0]) for c in captions]
    kept = [i for i in range(12) if i // 4 != which]
    assert numbers == kept, "every example of the damaged shard is left out, all others kept in order"
    assert loader.skipped_per_source == {"cc": 1}
    warned = [r.getMessage() for r in warnings_seen.records if shards[which] in r.getMessage()]
    assert warned and "skipped" in warned[0]


def _obelics(tmp_path, n=2):
    folder = tmp_path / "ob"
    docs = synthetic_documents(num_docs=4 * n, size=32, seed=2)
    return [write_obelics_parquet(str(folder / f"part-{i}.parquet"), docs[i::n]) for i in range(n)]


def test_truncated_parquet_is_skipped_and_counted_or_refused(tmp_path, tokenizer, warnings_seen):
    files = _obelics(tmp_path)
    _cut(files[1], os.path.getsize(files[1]) // 2)
    src = DataSource(name="ob", kind="obelics", path=os.path.dirname(files[0]))
    with pytest.raises(CorruptShardError, match=f"obelics shard {files[1]}: unreadable parquet"):
        build_dataloader(make_config([src], packing=False, strict=True), tokenizer, 0, 1)
    loader = build_dataloader(make_config([src], packing=False), tokenizer, 0, 1)
    batch = next(iter(loader))
    assert batch.num_samples == 4 and loader.skipped_per_source == {"ob": 1}
    assert any(files[1] in r.getMessage() for r in warnings_seen.records)


def test_corrupt_parquet_page_is_an_error_naming_the_source(tmp_path, tokenizer):
    path = str(tmp_path / "ob" / "part-0.parquet")
    write_obelics_parquet(path, synthetic_documents(num_docs=8, size=32, seed=2))
    data = bytearray(open(path, "rb").read())
    first_page = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data[first_page + 8:first_page + 40] = b"\xff" * 32  # the footer stays whole: only reading finds it
    open(path, "wb").write(bytes(data))
    loader = build_dataloader(make_config([DataSource(name="ob", kind="obelics", path=path)], packing=False),
                              tokenizer, 0, 1)
    with pytest.raises(CorruptShardError, match=f"data source 'ob' \\({path}\\): reading failed"):
        next(iter(loader))


def _raw_obelics(path, images, texts):
    image_type = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"images": pa.array(images, image_type), "texts": pa.array(texts, pa.list_(pa.string()))}),
                   path)


def test_obelics_null_cells_give_text_documents_or_named_skips(tmp_path, tokenizer, warnings_seen):
    path = str(tmp_path / "nulls.parquet")
    _raw_obelics(path,
                 images=[None, [None, None], None, [None]],
                 texts=[["a page with no images"], ["two", None], None, [None]])
    src = DataSource(name="ob", kind="obelics", path=path)
    cfg = make_config([src], packing=False)
    cfg.training.local_batch_size = 2
    loader = build_dataloader(cfg, tokenizer, 0, 1)
    batches = iter(loader)
    batch = next(batches)
    texts = [tokenizer.decode(ids[mask].tolist()) for ids, mask in zip(batch.input_ids, batch.attention_mask)]
    assert "a page with no images" in texts[0] and "two" in texts[1]
    assert loader.skipped_per_source == {"ob": 0}
    next(batches)  # rows 2 and 3 have neither image nor text: skipped, named, counted
    assert loader.skipped_per_source["ob"] == 2
    warned = [r.getMessage() for r in warnings_seen.records if "empty document" in r.getMessage()]
    assert len(warned) == 2 and all(path in w and "example" in w for w in warned)
    strict = build_dataloader(make_config([src], packing=False, strict=True), tokenizer, 0, 1)
    with pytest.raises(UnavailableImage, match=f"data source 'ob', {path}: example 3 .*empty document"):
        next(iter(strict))
