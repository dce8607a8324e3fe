"""Cameras of a LeRobot dataset: which visual features they are, and frames of ``image`` features.

LeRobot stores a camera either as a ``video`` feature (mp4 files) or as an ``image`` feature: a struct
``{"bytes", "path"}`` column of the data parquet holding PNG/JPEG bytes (or, before embedding, a path).
Depth cameras (``info["video.is_depth_map"]``, one channel, or "depth" in the key) are never picked by
default and, when asked for, are given to the model as three equal channels.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from .video import CorruptMediaError

VISUAL_DTYPES = ("video", "image")


def is_depth(key: str, feature: dict) -> bool:
    info = feature.get("info") or {}
    shape = list(feature.get("shape") or [])
    names = list(feature.get("names") or [])
    channels = shape[names.index("channels")] if "channels" in names and len(shape) == len(names) else (
        shape[-1] if len(shape) == 3 else 3)
    return bool(info.get("video.is_depth_map")) or channels == 1 or "depth" in key.lower()


def default_camera_keys(features: dict) -> list[str]:
    """Visual features (video or image, 3-D shape) that are not depth maps, in the dataset's order."""
    return [k for k, f in features.items()
            if f.get("dtype") in VISUAL_DTYPES and len(f.get("shape") or []) == 3 and not is_depth(k, f)]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1) depth/grey -> (H, W, 3); RGBA -> RGB; RGB unchanged."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


class ParquetImages:
    """Decoded frames of ``image`` columns, read one row group at a time (a small cache of row groups)."""

    def __init__(self, root: str, files: list[str], max_cached: int = 4):
        self.root, self.files = root, files
        self._row_groups: dict[int, np.ndarray] = {}  # file -> first row of each row group (+ end)
        self._cache: OrderedDict[tuple[int, int, str], list] = OrderedDict()
        self.max_cached = max_cached

    def _starts(self, file: int) -> np.ndarray:
        if file not in self._row_groups:
            meta = pq.ParquetFile(self.files[file]).metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self._row_groups[file] = np.concatenate([[0], np.cumsum(sizes)])
        return self._row_groups[file]

    def _cells(self, file: int, group: int, key: str) -> list:
        cached = self._cache.pop((file, group, key), None)
        if cached is None:
            table = pq.ParquetFile(self.files[file]).read_row_group(group, columns=[key])
            cached = table.column(key).to_pylist()
            if len(self._cache) >= self.max_cached:
                self._cache.popitem(last=False)
        self._cache[(file, group, key)] = cached
        return cached

    def frame(self, file: int, row: int, key: str) -> np.ndarray:
        """uint8 (H, W, 3) image of ``key`` at ``row`` of data file ``file``."""
        starts = self._starts(file)
        group = int(np.searchsorted(starts, row, side="right") - 1)
        cell = self._cells(file, group, key)[row - int(starts[group])]
        where = f"{self.files[file]} row {row} column '{key}'"
        try:
            if isinstance(cell, dict) and cell.get("bytes"):
                image = Image.open(io.BytesIO(cell["bytes"]))
            elif isinstance(cell, dict) and cell.get("path"):
                path = cell["path"] if os.path.isabs(cell["path"]) else os.path.join(self.root, cell["path"])
                image = Image.open(path)
            else:
                raise CorruptMediaError(f"{where}: no image bytes or path")
            array = np.asarray(image.convert("RGB") if image.mode not in ("L", "I;16", "I", "F") else image)
        except (OSError, ValueError) as err:
            raise CorruptMediaError(f"{where}: cannot decode the image: {err}") from err
        if array.dtype != np.uint8:  # 16-bit depth PNG
            array = (array.astype(np.float32) * (255.0 / max(float(array.max()), 1.0))).astype(np.uint8)
        return as_rgb(array)
