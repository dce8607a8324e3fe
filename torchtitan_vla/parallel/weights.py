"""Filling a meta-device, possibly sharded model: fresh init, or weights read from safetensors.

Order: build on ``meta`` -> ``parallelize_vla`` -> ``init_on_device`` (allocates local shards only,
then ``init_weights``) -> optionally ``load_weights`` (HF Qwen3-VL into the VLM part, an exported policy
into the whole VLA). A plain, unsharded module is the one-rank case of the same reader.

``load_weights`` is the only weight reader of the project: every rank reads only its own part of each
tensor from the memory-mapped safetensors files, through a key mapping (the model's state-dict adapter,
or none): the box of a renamed tensor whatever dims are sharded (FSDP rows, tensor-parallel rows or
columns), the dim-0 rows of a tensor the mapping reshapes along later dims. A tensor the mapping splits
along dim 0 (the fused ViT ``qkv``) is read whole and each rank keeps its part. Peak host memory per
rank (P = bytes of the model, N = ranks that shard a tensor, T = bytes of the largest tensor): the local
shards, P/N, plus the part of one tensor, T/N (T for a split tensor).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from torchtitan_vla.utils.distributed import local_tensor

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

KeyMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Stored names -> module names (``Qwen3VLStateDictAdapter.from_hf``): renames, reshapes and splits."""

Box = tuple[tuple[int, int], ...]
"""[start, stop) of each leading dim of a tensor (the dims not listed are read whole)."""

KeyFilter = Callable[[str], bool]


@torch.no_grad()
def init_on_device(model: nn.Module, device: torch.device, buffer_device: torch.device | None = None) -> None:
    """Allocate the (sharded) parameters of a meta-device model on ``device`` and run ``init_weights``.

    After ``parallelize_vla`` the parameters are DTensors, so ``to_empty`` allocates only this rank's
    shard. ``init_weights`` must also recompute non-persistent buffers (RoPE tables), which
    ``to_empty`` leaves uninitialised.
    """
    model.to_empty(device=device)
    model.init_weights(buffer_device=buffer_device or device)


def safetensors_files(folder: str | Path) -> list[Path]:
    """The weight files of a folder: those its index names, else model.safetensors, else every
    ``*.safetensors`` in it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"weights folder {folder} does not exist")
    index = folder / INDEX_NAME
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names weight files that do not exist: {missing}")
        return [folder / n for n in names]
    if (folder / SINGLE_NAME).is_file():
        return [folder / SINGLE_NAME]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors (or {INDEX_NAME}) in the weights folder {folder}")
    return files


@dataclass
class TensorSource:
    """Named tensors that can be read by rows."""

    where: str
    """What the tensors are (a folder), for error messages."""

    names: dict[str, str]
    """Stored name -> where it is stored (its file), for error messages."""

    shape: Callable[[str], tuple[int, ...]]
    """Stored name -> its shape, without reading the data."""

    read: Callable[[str, Box | None], torch.Tensor]
    """(stored name, the box to read or None for all) -> the tensor."""

    @classmethod
    def of_dict(cls, state: dict[str, torch.Tensor], where: str = "the state dict") -> TensorSource:
        """An in-memory state dict (e.g. a transformers model's) as a source."""
        return cls(where, dict.fromkeys(state, where), lambda k: tuple(state[k].shape),
                   lambda k, box: state[k] if box is None else state[k][_slices(box)])


@contextmanager
def open_safetensors(folder: str | Path) -> Iterator[TensorSource]:
    """The tensors of a safetensors folder, memory-mapped: a read touches only the rows it asks for."""
    with ExitStack() as stack:
        handles = {}
        for path in safetensors_files(folder):
            handle = stack.enter_context(safe_open(str(path), framework="pt"))
            handles.update(dict.fromkeys(handle.keys(), (path, handle)))

        def read(key: str, box: Box | None) -> torch.Tensor:
            sliced = handles[key][1].get_slice(key)
            return sliced[:] if box is None else sliced[_slices(box)]

        yield TensorSource(str(folder), {k: p.name for k, (p, _) in handles.items()},
                           lambda k: tuple(handles[k][1].get_slice(k).get_shape()), read)


def read_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors folder under its stored name, in memory (for tools and tests;
    ``load_weights_from`` reads into a model without this second copy)."""
    with open_safetensors(folder) as source:
        return {name: source.read(name, None) for name in source.names}


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in box)


def _box(target: torch.Tensor) -> Box | None:
    """The part of the global tensor this rank holds, or None for a plain (unsharded) tensor."""
    if not isinstance(target, DTensor):
        return None
    shape, offset = compute_local_shape_and_global_offset(target.shape, target.device_mesh, target.placements)
    return tuple((o, o + n) for o, n in zip(offset, shape))


def _read_box(stored: tuple[int, ...], mapped: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> Box | None:
    """What to read of one stored tensor for the module keys it maps to (``mapped``: their meta tensors).

    A rename reads exactly the target's box; a mapping that keeps dim 0 and only dim 0 is sharded reads
    the rows; anything else (a split along a sharded dim) reads the whole tensor (None)."""
    boxes = {_box(targets[k]) for k in mapped}
    if len(boxes) != 1 or (box := boxes.pop()) is None:
        return None
    if len(mapped) == 1 and tuple(next(iter(mapped.values())).shape) == stored:
        return box
    whole_beyond_rows = all(box[d] == (0, n) for k in mapped for d, n in enumerate(targets[k].shape) if d > 0)
    if whole_beyond_rows and all(m.shape[0] == stored[0] for m in mapped.values()):
        return box[:1]
    return None


@dataclass
class _Read:
    keys: list[str]
    """The module keys the stored tensor fills."""

    box: Box | None
    """What each rank reads of it (None: all of it, then each key keeps its own box)."""


def _plan(module: nn.Module, source: TensorSource, key_map: KeyMap, skip: KeyFilter | None) -> dict[str, _Read]:
    """Stored name -> the module keys it fills and what to read, after checking every name and shape:
    one ValueError lists every missing, unexpected and mis-shaped key (with the file) before anything
    is copied."""
    targets = module.state_dict()
    plan, unexpected, mismatched = {}, [], []
    for name, where in source.names.items():
        try:  # Map a meta tensor of the stored shape: names and shapes without reading any data.
            mapped = key_map({name: torch.empty(source.shape(name), device="meta")})
        except ValueError as error:
            unexpected.append(f"{name} in {where} ({error})")
            continue
        unknown = [k for k in mapped if k not in targets]
        if unknown:
            renamed = "" if unknown == [name] else f" (as {', '.join(unknown)})"
            unexpected.append(f"{name} in {where}{renamed}")
        known = {k: v for k, v in mapped.items() if k in targets}
        shaped = True
        for key, value in known.items():
            if value.shape != targets[key].shape:
                shaped = False
                mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model "
                                  f"{tuple(targets[key].shape)} ({name} in {where})")
        plan[name] = _Read(list(mapped), _read_box(source.shape(name), known, targets) if shaped and known else None)
    filled = {k for read in plan.values() for k in read.keys}
    # A key sharing storage with a filled one (the tied LM head) is filled through it.
    filled_storage = {local_tensor(targets[k]).untyped_storage().data_ptr() for k in filled if k in targets}
    missing = [k for k in targets if k not in filled and not (skip and skip(k))
               and local_tensor(targets[k]).untyped_storage().data_ptr() not in filled_storage]
    problems = [f"{what}: {sorted(keys)}" for what, keys in
                (("missing from the checkpoint", missing), ("unexpected", unexpected),
                 ("shape mismatches", mismatched)) if keys]
    if problems:
        raise ValueError(f"{source.where} does not fit {type(module).__name__}; " + "; ".join(problems))
    return plan


@torch.no_grad()
def load_weights(module: nn.Module, source: TensorSource, key_map: KeyMap | None = None,
                 skip: KeyFilter | None = None) -> None:
    """Copy every tensor of ``source`` into ``module`` (materialised, sharded or not); each rank reads
    only the part it holds (see the module docstring). ``key_map`` renames stored names to module keys
    (identity when None); module keys that ``skip`` accepts may be absent from the source (the expert
    half of joint layers, LoRA adapters)."""
    key_map = key_map or dict
    targets = module.state_dict()
    for name, read in _plan(module, source, key_map, skip).items():
        for key, value in key_map({name: source.read(name, read.box)}).items():
            box = _box(targets[key])
            if read.box is None and box is not None:
                value = value[_slices(box)]
            local_tensor(targets[key]).copy_(value)


def load_weights_from(module: nn.Module, folder: str | Path, key_map: KeyMap | None = None,
                      skip: KeyFilter | None = None) -> None:
    """``load_weights`` from a safetensors folder (index + shards, or one model.safetensors)."""
    with open_safetensors(folder) as source:
        load_weights(module, source, key_map, skip)
