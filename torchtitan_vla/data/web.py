"""Web sources read through ``datasets``: cc12m (WebDataset tar shards) and OBELICS (interleaved parquet).

Local files and ``hf://<repo>`` paths take the same code path (``load_dataset(..., streaming=True)``).
Images are read as raw bytes and decoded here, so a corrupt image skips one example (counted) instead of
breaking the stream. Local shards are checked before ``datasets`` opens them (a tar shard cut at a member
boundary would otherwise end early without an error): a damaged file is an error naming it with
``data.strict``, else a counted skip with a warning naming it.
"""

from __future__ import annotations

import glob
import importlib
import io
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ..utils.logging import logger
from .document import Document, Packer, pack
from .errors import DataError
from .mixture import SourceStream
from .prompts import PromptBuilder
from .sample import Sample

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
TEXT_EXTENSIONS = ("txt", "caption")


class UnavailableImage(DataError):
    """An image that cannot be had: corrupt bytes, a missing file, or a URL without a fetch function."""


class CorruptShardError(DataError):
    """A tar shard or parquet file that cannot be read whole (truncated, bad header, bad footer)."""


_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """WebDataset-style shard ranges: ``shard-{000..002}.tar`` -> the three names (zero padding kept)."""
    match = _BRACE_RANGE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.groups()
    width = len(first)
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [name for i in range(int(first), int(last) + 1) for name in expand_braces(f"{head}{i:0{width}d}{tail}")]


def _data_files(path: str, kind: str) -> list[str]:
    pattern = {"cc12m": "*.tar", "obelics": "*.parquet"}[kind]
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", pattern), recursive=True))
    else:
        files = sorted({f for p in expand_braces(path) for f in glob.glob(p)})
    if not files:
        raise FileNotFoundError(f"{kind} source: no {pattern} files at {path}")
    return files


def tar_problem(path: str) -> str | None:
    """Why the tar shard at ``path`` is not whole, or None. A whole archive is a whole number of 512-byte
    blocks ending with the end-of-archive block (zeros), which a cut almost never leaves behind: a cut at a
    member boundary ends with that member's data, a cut inside a member with its bytes. Two small reads,
    so every shard of a large source is checked at start-up (the full header walk costs ~60 us a member)."""
    size = os.path.getsize(path)
    if size % tarfile.BLOCKSIZE:
        return f"truncated: {size} bytes is not a whole number of {tarfile.BLOCKSIZE}-byte tar blocks"
    with open(path, "rb") as f:
        f.seek(max(0, size - 2 * tarfile.BLOCKSIZE))
        tail = f.read()
    if size < 2 * tarfile.BLOCKSIZE or tail.strip(tarfile.NUL):
        return f"truncated: the {size} bytes do not end with the tar end-of-archive block"
    return None


def parquet_problem(path: str) -> str | None:
    """Why the parquet file at ``path`` cannot be opened (a truncated file has no footer), or None."""
    try:
        pq.ParquetFile(path).close()
    except (OSError, pa.ArrowException) as err:
        return f"unreadable parquet ({err})"
    return None


def usable_files(kind: str, files: list[str], strict: bool, report: bool) -> tuple[list[str], int]:
    """The files that pass the check of their kind and how many did not; a damaged file is an error with
    ``strict``, else left out, with a warning naming it when ``report``."""
    problem = {"cc12m": tar_problem, "obelics": parquet_problem}[kind]
    good = []
    for path in files:
        why = problem(path)
        if why is None:
            good.append(path)
        elif strict:
            raise CorruptShardError(f"{kind} shard {path}: {why}")
        elif report:
            logger.warning(f"{kind} shard {path}: {why}; skipped (data.strict = false)")
    return good, len(files) - len(good)


def open_web_dataset(kind: str, path: str, split: str, dp_rank: int, dp_world_size: int,
                     files: list[str] | None = None):
    """A streaming ``datasets.IterableDataset`` of the source, this rank's share only (``files``: the local
    files to read, as ``usable_files`` left them; None: every file at ``path``)."""
    from datasets.distributed import split_dataset_by_node

    import datasets

    builder = {"cc12m": "webdataset", "obelics": "parquet"}[kind]
    if path.startswith("hf://"):
        ds = datasets.load_dataset(path.removeprefix("hf://"), split=split, streaming=True)
    else:
        files = _data_files(path, kind) if files is None else files
        if not files:
            raise FileNotFoundError(f"{kind} source: no readable file left at {path}")
        try:  # reads the first examples of the first file to infer the features
            ds = datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=True)
        except (OSError, tarfile.TarError, pa.ArrowException) as err:
            raise CorruptShardError(f"{kind} shard {files[0]}: reading its first examples failed: "
                                    f"{type(err).__name__}: {err}") from err
    if kind == "cc12m":
        image_columns = [c for c in IMAGE_EXTENSIONS if c in (ds.features or {})]
        for column in image_columns:
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return split_dataset_by_node(ds, rank=dp_rank, world_size=dp_world_size)


def load_fetcher(spec: str) -> Callable[[str], bytes] | None:
    """``module:function`` -> the function that fetches an image URL's bytes (empty spec: None)."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"image fetch function '{spec}' cannot be imported: {err}") from err


def decode_image(data: Any, base_dir: str, fetch: Callable[[str], bytes] | None) -> Image.Image:
    """PIL RGB image from embedded bytes, a ``{"bytes", "path"}`` dict, a local path or a URL."""
    if isinstance(data, dict):
        data = data.get("bytes") or data.get("path")
    if isinstance(data, str):
        if "://" in data:
            if fetch is None:
                raise UnavailableImage(f"image URL {data} needs data.image_fetch_fn")
            try:
                data = fetch(data)
            except Exception as err:  # any fetch failure means the image cannot be had
                raise UnavailableImage(f"fetching {data} failed: {err}") from err
        else:
            local = data if os.path.isabs(data) else os.path.join(base_dir, data)
            if not os.path.exists(local):
                raise UnavailableImage(f"image file not found: {local}")
            with open(local, "rb") as f:
                data = f.read()
    if not isinstance(data, bytes | bytearray):
        raise UnavailableImage(f"no image data in {type(data).__name__}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UnavailableImage(f"corrupt image: {err}") from err
    return image.convert("RGB")


def cc12m_document(example: dict, prompts: PromptBuilder, base_dir: str, fetch) -> Document:
    image_key = next((k for k in IMAGE_EXTENSIONS if example.get(k) is not None), None)
    text_key = next((k for k in TEXT_EXTENSIONS if example.get(k)), None)
    if image_key is None or text_key is None:
        raise UnavailableImage(f"example {example.get('__key__')} lacks an image or a caption")
    return prompts.caption(decode_image(example[image_key], base_dir, fetch), example[text_key].strip())


def obelics_document(example: dict, prompts: PromptBuilder, base_dir: str, fetch) -> Document:
    # A null cell stands for "nothing at any position": a row without images is a text-only document.
    images, texts = example.get("images"), example.get("texts")
    if images is not None and texts is not None and len(images) != len(texts):
        raise UnavailableImage(f"{len(images)} images but {len(texts)} texts")
    width = len(images if images is not None else texts or [])
    items: list[str | Image.Image] = []
    for image, text in zip(images or [None] * width, texts or [None] * width):
        if image is not None:
            items.append(decode_image(image, base_dir, fetch))
        elif text:
            items.append(text)
    if not items:
        raise UnavailableImage("empty document (no image and no text)")
    return prompts.interleaved(items)


class WebStream(SourceStream):
    """Packed samples from one web source, resumable from the read position of ``datasets``."""

    def __init__(self, kind: str, path: str, split: str, name: str, source_id: int, prompts: PromptBuilder,
                 packer: Packer, dp_rank: int, dp_world_size: int, strict: bool, fetch_fn: str = "",
                 counts_bad_files: bool = False):
        """``counts_bad_files``: this stream warns about and counts the damaged files it leaves out (only the
        first stream of rank 0 does, so a bad shard is one skip, not one per rank and worker)."""
        self.name, self.source_id, self.prompts, self.packer, self.strict = name, source_id, prompts, packer, strict
        self.path = path
        self.to_document = {"cc12m": cc12m_document, "obelics": obelics_document}[kind]
        self.base_dir = path if os.path.isdir(path) else os.path.dirname(path)
        self.fetch = load_fetcher(fetch_fn)
        files, bad = (None, 0) if path.startswith("hf://") else usable_files(
            kind, _data_files(path, kind), strict, report=counts_bad_files)
        self.ds = open_web_dataset(kind, path, split, dp_rank, dp_world_size, files)
        self.epoch = 0
        self.skipped = bad if counts_bad_files else 0
        self._position = 0  # examples read in this epoch since the reader started, to name a skipped one
        self._last_shard = ""
        self._resume: dict | None = None  # datasets' state to restart from (None: the epoch's start)
        self._iter: Iterator[tuple[int, dict | None, Document]] | None = None
        self._pending: tuple[int, dict | None, Document] | None = None

    def _documents(self) -> Iterator[tuple[int, dict | None, Document]]:
        """(epoch, state of ``datasets`` before the document was read, document), endlessly over epochs."""
        while True:
            self.ds.set_epoch(self.epoch)
            if self._resume is not None:
                self.ds.load_state_dict(self._resume)
            produced = False
            before = self._resume
            for example in self._examples():
                try:
                    doc = self.to_document(example, self.prompts, self.base_dir, self.fetch)
                    doc = doc.truncate(self.packer.max_len, self.prompts.vision_start_id)
                    if doc is None:
                        raise UnavailableImage(f"first image needs more than max_seq_len={self.packer.max_len} tokens")
                except UnavailableImage as err:
                    where = self._describe(example)
                    if self.strict:
                        raise UnavailableImage(f"data source '{self.name}', {where}: {err}") from err
                    self.skipped += 1
                    logger.warning(f"data source '{self.name}', {where}: skipped: {err}")
                else:
                    produced = True
                    yield self.epoch, before, doc
                before = self.ds.state_dict()
            if not produced and self._resume is None:
                raise RuntimeError(f"data source '{self.name}' yielded no usable example in a whole epoch "
                                   f"(too few shards for the ranks and workers, or every example skipped)")
            self.epoch, self._resume = self.epoch + 1, None

    def _examples(self) -> Iterator[dict]:
        """The examples of ``datasets``; a read failure (damage the start-up check cannot see, e.g. a corrupt
        page inside a parquet file) is an error naming the source and the last shard read."""
        self._position = 0
        examples = iter(self.ds)
        while True:
            try:
                example = next(examples)
            except StopIteration:
                return
            except (OSError, tarfile.TarError, pa.ArrowException) as err:
                after = f" after shard {self._last_shard}" if self._last_shard else ""
                raise CorruptShardError(f"data source '{self.name}' ({self.path}): reading failed{after}: "
                                        f"{type(err).__name__}: {err}") from err
            self._position += 1
            self._last_shard = example.get("__url__") or self._last_shard
            yield example

    def _describe(self, example: dict) -> str:
        """Where an example comes from, as precisely as ``datasets`` tells (WebDataset: shard and key)."""
        if example.get("__url__"):
            return f"shard {example['__url__']} member {example.get('__key__')}"
        # The parquet reader of ``datasets`` does not say which file or row an example came from.
        return f"{self.path}: example {self._position} read in epoch {self.epoch} (since the reader started)"

    def _next_document(self) -> tuple[int, dict | None, Document]:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        if self._iter is None:
            self._iter = self._documents()
        return next(self._iter)

    def next(self, rng: np.random.Generator) -> Sample:
        docs = [self._next_document()[2]]
        while self.packer.enabled:
            item = self._next_document()
            if not self.packer.fits(docs, item[2]):
                self._pending = item
                break
            docs.append(item[2])
        return pack(docs, self.source_id, self.prompts.image_token_id)

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:
            # Resume re-reads the document that did not fit into the last sample.
            return {"epoch": self._pending[0], "datasets": self._pending[1]}
        return {"epoch": self.epoch, "datasets": self.ds.state_dict() if self._iter is not None else self._resume}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self._resume = int(state["epoch"]), state["datasets"]
        self._iter, self._pending = None, None
        self.skipped = 0  # the restored loader's counts already hold the files left out at the start
