"""A local HF Qwen3-VL folder <-> the native model, through the project's one weight reader
(``parallel.weights``) and one writer (``parallel.weights_writer``); this module adds the HF config and
the key mapping (``Qwen3VLStateDictAdapter``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from ...parallel.weights import TensorSource, load_weights, load_weights_from
from ...parallel.weights_writer import DEFAULT_MAX_SHARD_BYTES, Conversion, write_weights
from .args import Qwen3VLArgs
from .model import Qwen3VLModel
from .state_dict_adapter import Qwen3VLStateDictAdapter


def read_hf_config(path: str | Path) -> Qwen3VLArgs:
    """Model arguments from ``<path>/config.json``."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in the HF checkpoint directory {path}")
    return Qwen3VLArgs.from_hf_config(json.loads(config_file.read_text()))


def write_hf_config(args: Qwen3VLArgs, folder: Path, dtype: torch.dtype) -> None:
    """``<folder>/config.json`` as transformers writes it, with the dtype of the stored weights."""
    config = args.to_hf_config()
    config["dtype"] = str(dtype).removeprefix("torch.")
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def hf_conversions(args: Qwen3VLArgs, keys: Iterable[str]) -> list[Conversion]:
    """Native ``Qwen3VLModel`` keys -> HF tensors for the writer: a fused MoE expert tensor needs its
    layer's ``w1``/``w3`` (``w2``) together, a fused ViT ``qkv`` its block's q, k and v; every other key
    converts on its own."""
    to_hf = Qwen3VLStateDictAdapter(args).to_hf
    groups: dict[str, list[str]] = {}
    for key in keys:
        group = re.sub(r"\.experts\.w[123]$", ".experts", key)
        groups.setdefault(re.sub(r"\.attn\.[qkv]_proj\.", ".attn.qkv.", group), []).append(key)
    return [(group, to_hf) for group in groups.values()]


def load_hf_weights(model: Qwen3VLModel, hf_state: dict[str, torch.Tensor]) -> None:
    """Copy an in-memory HF state dict (a transformers model's) into the materialised ``model``;
    missing, unknown or mis-shaped keys raise one ValueError that lists every offending key."""
    model.tie_weights()  # a tied head is filled through the embedding
    load_weights(model, TensorSource.of_dict(hf_state, "the HF state dict"), Qwen3VLStateDictAdapter(model.args).from_hf)


def load_hf_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    attention_backend: str = "sdpa",
) -> Qwen3VLModel:
    """A native Qwen3-VL from a local HF directory (config.json + safetensors), in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"HF checkpoint directory {path} does not exist")
    args = read_hf_config(path)
    with torch.device("meta"):
        model = Qwen3VLModel(args, attention_backend=attention_backend)
    model.to_empty(device=device)
    model.to(dtype)
    model.tie_weights()  # to_empty unties; a tied head is then filled through the embedding
    load_weights_from(model, path, Qwen3VLStateDictAdapter(args).from_hf)
    model.reset_buffers(device)
    return model.eval()


def save_hf_checkpoint(
    model: Qwen3VLModel, path: str | Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    dtype: torch.dtype | None = None,
) -> None:
    """Write ``config.json``, safetensors shards and their index that transformers' ``from_pretrained``
    loads, atomically; ``model`` may be FSDP-sharded (every rank calls it then)."""
    state = model.state_dict()
    dtype = dtype or next(iter(state.values())).dtype
    write_weights(path, state, hf_conversions(model.args, state), dtype, max_shard_bytes,
                  write_files=lambda folder: write_hf_config(model.args, folder, dtype))
