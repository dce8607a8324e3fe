"""The only weight writer: a module's tensors (plain, or FSDP2-sharded DTensors) as a folder of
safetensors shards + ``model.safetensors.index.json`` + config files, written atomically.

Every folder looks the same whatever its size: shards ``model-0000i-of-0000n.safetensors`` of at most
``max_shard_bytes`` (a larger single tensor gets a shard of its own) and the index, which
transformers' ``from_pretrained`` and ``weights.load_weights_from`` read.

A sharded module is gathered one conversion (usually one tensor) at a time: ``full_tensor()`` is a
collective, so every rank walks the same conversions in the same order, and rank 0 converts and writes.
Rank 0 holds at most one shard being filled plus one gathered group; no rank ever builds a second full
copy of the model.

Atomic: the folder is written as ``<folder>.tmp`` and renamed into place when complete, so an
interrupted write never replaces a good folder and never leaves a half-written one under its name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.checksums import first_mismatch, folder_crc32

from .weights import INDEX_NAME

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30

Convert = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
Conversion = tuple[list[str], Convert]
"""(module keys gathered together, their full tensors -> the stored tensors made of them): an HF
rename, a fused MoE expert tensor, a LoRA merge."""


def as_stored(keys: Iterable[str]) -> list[Conversion]:
    """Each key stored under its own name (an exported policy: the module's native state dict)."""
    return [([key], dict) for key in keys]


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A contiguous CPU copy of its own (safetensors refuses tensors that share memory, e.g. a tied
    head), floating point ones in ``dtype``."""
    dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
    return tensor.detach().to("cpu", dtype, copy=True).contiguous()


def gathered(state: dict[str, torch.Tensor], conversions: list[Conversion], dtype: torch.dtype | None,
             writer: bool) -> Iterator[dict[str, torch.Tensor]]:
    """The stored tensors, one conversion at a time, on the ``writer`` rank (a collective: the other
    ranks take part in each gather and get empty dicts)."""
    for keys, convert in conversions:
        full = {key: _full(state[key].detach()) for key in keys}
        yield {name: _stored(t, dtype) for name, t in convert(full).items()} if writer else {}


@contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A fresh ``<folder>.tmp`` to write into. On success it replaces ``folder`` (a previous folder is
    moved aside to ``<folder>.old`` first and deleted after); on an exception it is deleted and
    ``folder`` is left as it was."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_shards(folder: Path, tensors: Iterable[dict[str, torch.Tensor]], max_shard_bytes: int) -> dict:
    """Write the stream of stored tensors as shards of at most ``max_shard_bytes`` plus the index;
    return the index."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    parts: list[list[str]] = []
    shard: dict[str, torch.Tensor] = {}
    size = total = 0

    def flush() -> None:
        save_file(shard, str(folder / f"part-{len(parts)}.safetensors"), metadata={"format": "pt"})
        parts.append(list(shard))

    seen: set[str] = set()
    for group in tensors:
        for name, tensor in group.items():
            if name in seen:
                raise ValueError(f"two tensors are stored as {name!r}")
            seen.add(name)
            nbytes = tensor.numel() * tensor.element_size()
            if shard and size + nbytes > max_shard_bytes:
                flush()
                shard, size = {}, 0
            shard[name] = tensor
            size += nbytes
            total += nbytes
    flush()
    weight_map = {}
    for i, names in enumerate(parts):
        file = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
        os.replace(folder / f"part-{i}.safetensors", folder / file)
        weight_map.update(dict.fromkeys(names, file))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return index


def record_checksums(folder: Path, index: dict) -> None:
    """Add the CRC-32 of every other file of the folder to the index's metadata (``crc32``), which
    ``verify_checksums`` checks before loading."""
    index["metadata"]["crc32"] = folder_crc32(folder, exclude=(INDEX_NAME,))
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2))


def verify_checksums(folder: str | Path) -> None:
    """Raise ``ValueError`` naming the first file of a written folder whose CRC-32 differs from the one
    recorded in its index (folders written before checksums were recorded pass unchecked)."""
    index = Path(folder) / INDEX_NAME
    try:
        recorded = json.loads(index.read_text())["metadata"].get("crc32", {})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{index} is unreadable ({type(e).__name__}: {e})") from None
    reason = first_mismatch(folder, recorded)
    if reason is not None:
        raise ValueError(f"exported weights: {reason}")


def write_weights(folder: str | Path, state: dict[str, torch.Tensor], conversions: list[Conversion],
                  dtype: torch.dtype | None = None, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                  write_files: Callable[[Path], None] | None = None) -> None:
    """Write ``state`` (a module's state dict, sharded or not) through ``conversions`` into ``folder``,
    with ``write_files(tmp_folder)`` adding the config files; every rank calls it, rank 0 writes."""
    writer = dist_utils.rank() == 0
    stream = gathered(state, conversions, dtype, writer)
    if writer:
        with atomic_folder(Path(folder)) as tmp:
            index = write_shards(tmp, stream, max_shard_bytes)
            if write_files is not None:
                write_files(tmp)
            record_checksums(tmp, index)
    else:
        for _ in stream:  # take part in every gather
            pass
    dist_utils.barrier()
