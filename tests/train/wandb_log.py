"""Read the records of an offline wandb run file (``run-*.wandb``), to check what was logged.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte
header (crc32, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4); chunks join into
serialized ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def logged_history(path: Path) -> list[dict[str, str]]:
    """Each ``wandb.log`` call as ``{key: value_json}``."""
    out = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            out.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return out


def logged_config(path: Path) -> dict[str, str]:
    """The run's config as ``{key: value_json}`` (from the run record and later config updates)."""
    out = {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update({item.key: item.value_json for item in record.run.config.update})
        elif kind == "config":
            out.update({item.key: item.value_json for item in record.config.update})
    return out
