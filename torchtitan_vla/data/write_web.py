"""Writers of tiny real web-data instances: cc12m-style WebDataset tar shards and OBELICS-style parquet."""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def _jpeg_bytes(image: Any) -> bytes:
    if isinstance(image, bytes):
        return image
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_cc12m_shards(root: str, items: list[tuple[Any, str]], shard_size: int = 100) -> list[str]:
    """Write ``(image, caption)`` pairs as WebDataset shards ``cc12m-train-XXXX.tar`` (jpg/txt/json per key).

    ``image`` is a uint8 (H, W, 3) array, a PIL image, or raw bytes (written as given, so a test can plant a
    corrupt image). Returns the shard paths.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    os.makedirs(root, exist_ok=True)
    paths = []
    for shard, first in enumerate(range(0, len(items), shard_size)):
        path = os.path.join(root, f"cc12m-train-{shard:04d}.tar")
        with tarfile.open(path, "w") as tar:
            for i, (image, caption) in enumerate(items[first:first + shard_size], start=first):
                key = f"{i:09d}"
                _add(tar, f"{key}.jpg", _jpeg_bytes(image))
                _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", json.dumps({"key": key, "caption": caption}).encode())
        paths.append(path)
    return paths


def write_obelics_parquet(path: str, docs: list[dict[str, list]], embed_images: bool = True) -> str:
    """Write interleaved documents ``{"images": [...], "texts": [...]}`` as an OBELICS-style parquet file.

    At each position exactly one of ``images[i]`` and ``texts[i]`` is not None (OBELICS' convention).
    An image is an array/PIL image (stored as embedded JPEG bytes when ``embed_images``, else as a JPEG
    file next to the parquet referenced by its relative path), raw bytes, or a string (a URL or a path,
    stored as given).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    images_col, texts_col = [], []
    for d, doc in enumerate(docs):
        if len(doc["images"]) != len(doc["texts"]):
            raise ValueError(f"doc {d}: images and texts must have the same length")
        row = []
        for i, (image, text) in enumerate(zip(doc["images"], doc["texts"])):
            if (image is None) == (text is None):
                raise ValueError(f"doc {d}, position {i}: exactly one of image and text must be set")
            if image is None:
                row.append(None)
            elif isinstance(image, str):
                row.append({"bytes": None, "path": image})
            elif embed_images or isinstance(image, bytes):
                row.append({"bytes": _jpeg_bytes(image), "path": None})
            else:
                name = f"{os.path.splitext(os.path.basename(path))[0]}_img_{d:05d}_{i:03d}.jpg"
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(_jpeg_bytes(image))
                row.append({"bytes": None, "path": name})
        images_col.append(row)
        texts_col.append(list(doc["texts"]))
    image_type = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"images": pa.array(images_col, image_type), "texts": pa.array(texts_col, pa.list_(pa.string()))})
    pq.write_table(table, path, row_group_size=max(1, len(docs) // 4))
    return path
