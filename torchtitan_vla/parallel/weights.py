"""Filling a meta-device, already sharded model: fresh init, or HF safetensors without ever holding the
full model on every rank.

Order: build on ``meta`` -> ``parallelize_vla`` -> ``init_on_device`` (allocates local shards only,
then ``init_weights``) -> optionally ``load_hf_sharded`` / ``load_hf_rank0`` into the VLM part.

Peak host memory per rank (P = bytes of the VLM in the checkpoint dtype, N = data-parallel ranks,
T = bytes of the largest single tensor):

* ``init_on_device``: the local shards, about P/N per rank (plus the non-persistent RoPE buffers).
* ``load_hf_sharded`` (every rank reads only its rows of every tensor from the safetensors files,
  which are memory-mapped): P/N + the rows of one tensor, so about P/N + T/N. The path for large models.
* ``load_hf_rank0`` (rank 0 reads the whole checkpoint, then broadcasts tensor by tensor): rank 0
  holds about P + P/N, the other ranks P/N + T. Simple and fine for small models (the debug flavor,
  2B on a large host); it also works when the checkpoint is on rank 0's disk only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.tensor import DTensor, Shard
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from torchtitan_vla.models.qwen3_vl.hf_checkpoint import safetensors_files

FromHF = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
KeyFilter = Callable[[str], bool]


@torch.no_grad()
def init_on_device(model: nn.Module, device: torch.device, buffer_device: torch.device | None = None) -> None:
    """Allocate the (sharded) parameters of a meta-device model on ``device`` and run ``init_weights``.

    After ``parallelize_vla`` the parameters are DTensors, so ``to_empty`` allocates only this rank's
    shard. ``init_weights`` must also recompute non-persistent buffers (RoPE tables), which
    ``to_empty`` leaves uninitialised.
    """
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(buffer_device=buffer_device or device)


def _rows(target: torch.Tensor) -> tuple[int, int] | None:
    """Rows (dim 0) of the global tensor this rank holds, or None for a plain (unsharded) tensor."""
    if not isinstance(target, DTensor):
        return None
    for placement in target.placements:
        if isinstance(placement, Shard) and placement.dim != 0:
            raise ValueError(f"load_hf_sharded: only dim-0 sharding is supported, got {target.placements}")
    shape, offset = compute_local_shape_and_global_offset(target.shape, target.device_mesh, target.placements)
    return offset[0], offset[0] + shape[0]


def _local(target: torch.Tensor) -> torch.Tensor:
    return target.to_local() if isinstance(target, DTensor) else target


@torch.no_grad()
def load_hf_sharded(
    module: nn.Module, hf_dir: str | Path, from_hf: FromHF, strict: bool = True, not_in_hf: KeyFilter | None = None
) -> list[str]:
    """Every rank reads its own rows of each tensor straight from the safetensors files.

    ``from_hf`` maps an HF state dict to ``module``'s keys (the model's state-dict adapter); it must keep
    dim 0 of every tensor (renames, reshapes and splits along later dims do), since FSDP shards dim 0.
    Returns the module keys that the checkpoint did not fill (an error with ``strict``, except keys
    that share storage with a filled one, e.g. a tied LM head, and keys ``not_in_hf`` accepts).
    """
    targets = module.state_dict()
    filled: set[str] = set()
    for path in safetensors_files(hf_dir):
        with safe_open(str(path), framework="pt") as f:
            for hf_key in f.keys():
                tensor_slice = f.get_slice(hf_key)
                # Map the key on an empty tensor of the right shape first, to learn which rows to read.
                probe = from_hf({hf_key: torch.empty(tensor_slice.get_shape(), device="meta")})
                unknown = [k for k in probe if k not in targets]
                if unknown:
                    raise ValueError(f"{path}: {hf_key} maps to {unknown}, which {type(module).__name__} lacks")
                rows = {_rows(targets[k]) for k in probe}
                if len(rows) != 1:
                    raise ValueError(f"{path}: {hf_key} feeds tensors sharded differently: {sorted(probe)}")
                span = rows.pop()
                data = tensor_slice[:] if span is None else tensor_slice[span[0] : span[1]]
                for key, value in from_hf({hf_key: data}).items():
                    local = _local(targets[key])
                    if local.shape != value.shape:
                        raise ValueError(
                            f"{path}: {hf_key} gives {key} a local shape {tuple(value.shape)}, "
                            f"but this rank holds {tuple(local.shape)}"
                        )
                    local.copy_(value)
                    filled.add(key)
    return _check_unfilled(targets, filled, strict, hf_dir, not_in_hf)


def _check_unfilled(targets: dict, filled: set[str], strict: bool, hf_dir, not_in_hf: KeyFilter | None) -> list[str]:
    filled_storage = {_local(targets[k]).untyped_storage().data_ptr() for k in filled}
    unfilled = sorted(
        k
        for k in targets
        if k not in filled
        and _local(targets[k]).untyped_storage().data_ptr() not in filled_storage
        and not (not_in_hf and not_in_hf(k))
    )
    if strict and unfilled:
        raise ValueError(f"{hf_dir}: the checkpoint has no weights for {unfilled}")
    return unfilled


def load_hf_rank0(
    module: nn.Module, hf_dir: str | Path, from_hf: FromHF, strict: bool = True, not_in_hf: KeyFilter | None = None
) -> None:
    """Rank 0 reads the whole checkpoint and broadcasts it; each rank keeps its shard.

    Only rank 0 needs to see ``hf_dir``. Tied parameters missing from the checkpoint (the LM head of a
    tied flavor) are filled through the parameter they share.
    """
    is_rank0 = not dist.is_initialized() or dist.get_rank() == 0
    state: dict[str, torch.Tensor] = {}
    if is_rank0:
        for path in safetensors_files(hf_dir):
            state.update(from_hf(load_file(str(path))))
        targets = module.state_dict()
        unknown = sorted(set(state) - set(targets))
        if unknown:
            raise ValueError(f"{hf_dir}: checkpoint keys {unknown} are not in {type(module).__name__}")
        _check_unfilled(targets, set(state), strict, hf_dir, not_in_hf)
    # Non-strict: tied keys absent from the checkpoint share storage with a present one.
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=dist.is_initialized(), strict=False)
    set_model_state_dict(module, state, options=options)


def load_vla_hf_weights(vla: nn.Module, hf_dir: str | Path, per_rank: bool = True) -> None:
    """Load HF Qwen3-VL safetensors into ``vla.vlm`` (sharded or not); the expert keeps its weights.

    ``per_rank`` (default) reads per-rank slices; ``False`` reads on rank 0 and broadcasts. Matches the
    trainer's ``TrainSpec.load_hf_weights(model, folder)``.
    """
    from torchtitan_vla.models.qwen3_vl.state_dict_adapter import Qwen3VLStateDictAdapter
    from torchtitan_vla.models.vla import not_in_hf_checkpoint

    from_hf = Qwen3VLStateDictAdapter(vla.vlm.args).from_hf
    loader = load_hf_sharded if per_rank else load_hf_rank0
    loader(vla.vlm, hf_dir, from_hf, strict=True, not_in_hf=not_in_hf_checkpoint)
