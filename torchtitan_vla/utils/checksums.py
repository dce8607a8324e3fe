"""File checksums for checkpoints and exported weights: CRC-32 read in 8 MiB chunks.

CRC-32 (zlib) runs at disk speed (docs/BENCHMARKS.md: "Checksums"), so a multi-GB shard costs about as
long to check as to read once. It catches what a size check misses: flipped bytes, a zeroed or
overwritten shard; it is not a defence against deliberate tampering.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

CHUNK_BYTES = 8 * 2**20


def file_crc32(path: str | Path) -> str:
    """The CRC-32 of a file's bytes, as 8 hex digits."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def folder_crc32(folder: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: crc32}`` of every file under ``folder`` except the names in ``exclude``."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): file_crc32(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in exclude
    }


def first_mismatch(folder: str | Path, recorded: dict[str, str]) -> str | None:
    """``None`` if every recorded file is there with its checksum, else the reason naming the first that
    is not."""
    folder = Path(folder)
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        try:
            actual = file_crc32(path)
        except OSError as e:
            return f"{path} is unreadable ({e.strerror or e})"
        if actual != expected:
            return f"{path} is corrupt (crc32 {actual}, {expected} was written)"
    return None


def export_content_hash(folder: str | Path) -> str:
    """``sha256:<hex>`` over the CRC-32 of every file of an exported policy (weights, config, tokenizer) and
    its weight map: two exports with the same bytes get the same hash. The checksums the index records are
    used (the policy loader verifies them against the files); an export without them is read in full."""
    from torchtitan_vla.parallel.weights import INDEX_NAME  # loads torch: only for an exported policy

    folder = Path(folder)
    index = json.loads((folder / INDEX_NAME).read_text())
    crcs = index.get("metadata", {}).get("crc32") or folder_crc32(folder, exclude=(INDEX_NAME,))
    content = {"files": crcs, "weight_map": index.get("weight_map")}
    return "sha256:" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
