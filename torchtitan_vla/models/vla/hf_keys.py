"""The VLA's Hugging Face key mapping: which keys of ``vla.vlm`` an HF Qwen3-VL checkpoint holds, and
the conversions that read them from one (into a possibly sharded VLA) and write them to one (LoRA
merged, the expert half left out), through the project's one weight reader and writer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...parallel.weights import TensorSource, load_weights, load_weights_from
from ...parallel.weights_writer import Conversion, Convert, as_stored, gathered
from ..lora import LoRALinear, is_lora_parameter, merged_weight
from ..qwen3_vl.hf_checkpoint import hf_conversions
from ..qwen3_vl.state_dict_adapter import Qwen3VLStateDictAdapter

if TYPE_CHECKING:
    from .model import VLA


def not_in_hf_checkpoint(vlm_key: str) -> bool:
    """Keys of ``VLA.vlm`` that a Hugging Face Qwen3-VL checkpoint cannot hold: the expert half of the
    joint layers and LoRA adapters (their merged weights are exported instead)."""
    return ".expert." in f".{vlm_key}" or is_lora_parameter(vlm_key)


def _merge_lora(weight_key: str, scaling: float, to_hf: Convert, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = weight_key.removesuffix("weight")
    weight, a, b = full[weight_key], full[prefix + "lora_a.weight"], full[prefix + "lora_b.weight"]
    return to_hf({weight_key: merged_weight(weight, a, b, scaling)})


def _with_lora_merged(vla: VLA, conversions: list[Conversion]) -> list[Conversion]:
    """A LoRA-wrapped linear gathers its base weight and both adapters and stores ``W + scaling * B @ A``."""
    lora = {f"{name}.weight": module for name, module in vla.vlm.named_modules() if isinstance(module, LoRALinear)}
    out = []
    for group, convert in conversions:
        module = lora.get(group[0])
        if module is None:
            out.append((group, convert))
            continue
        prefix = group[0].removesuffix("weight")
        out.append(([group[0], prefix + "lora_a.weight", prefix + "lora_b.weight"],
                    functools.partial(_merge_lora, group[0], module.scaling, convert)))
    return out


def _hf_keys(vla: VLA) -> list[str]:
    return [key for key in vla.vlm.state_dict() if not not_in_hf_checkpoint(key)]


def vlm_hf_conversions(vla: VLA) -> list[Conversion]:
    """``vla.vlm.state_dict()`` keys -> HF tensors, LoRA merged, for ``weights_writer``."""
    return _with_lora_merged(vla, hf_conversions(vla.vlm.args, _hf_keys(vla)))


def _collect(vla: VLA, conversions: list[Conversion]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for tensors in gathered(vla.vlm.state_dict(), conversions, dtype=None, writer=True):
        out.update(tensors)
    return out


def vlm_state_dict(vla: VLA) -> dict[str, torch.Tensor]:
    """The VLM part in native ``Qwen3VLModel`` names, LoRA merged, expert entries left out (CPU copies;
    a collective if sharded)."""
    return _collect(vla, _with_lora_merged(vla, as_stored(_hf_keys(vla))))


def vlm_hf_state_dict(vla: VLA) -> dict[str, torch.Tensor]:
    """The VLM part in Hugging Face Qwen3-VL naming, LoRA merged (CPU copies; a collective if sharded)."""
    return _collect(vla, vlm_hf_conversions(vla))


def _load(vla: VLA, read) -> None:
    read(vla.vlm, key_map=Qwen3VLStateDictAdapter(vla.vlm.args).from_hf, skip=not_in_hf_checkpoint)


def load_vlm_hf(vla: VLA, folder: str | Path) -> None:
    """Load an HF Qwen3-VL folder into the (materialised, possibly sharded) VLM part; every rank reads
    only its rows; the expert keeps its weights."""
    _load(vla, functools.partial(load_weights_from, folder=folder))


def load_vlm_hf_state_dict(vla: VLA, hf_state: dict[str, torch.Tensor]) -> None:
    """Load an in-memory HF Qwen3-VL state dict into the VLM part; the expert keeps its weights."""
    _load(vla, functools.partial(load_weights, source=TensorSource.of_dict(hf_state, "the HF state dict")))
