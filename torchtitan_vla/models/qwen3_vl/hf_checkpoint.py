"""Load a local HF Qwen3-VL directory into the native model, and export the model back to one."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .args import Qwen3VLArgs
from .model import Qwen3VLModel
from .state_dict_adapter import Qwen3VLStateDictAdapter

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def read_hf_config(path: str | Path) -> Qwen3VLArgs:
    """Model arguments from ``<path>/config.json``."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in the HF checkpoint directory {path}")
    return Qwen3VLArgs.from_hf_config(json.loads(config_file.read_text()))


def safetensors_files(path: str | Path) -> list[Path]:
    """The weight files of a checkpoint: those the index names, else model.safetensors, else every
    ``*.safetensors`` in the directory."""
    path = Path(path)
    index = path / INDEX_NAME
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names weight files that do not exist: {missing}")
        return [path / n for n in names]
    if (path / SINGLE_NAME).is_file():
        return [path / SINGLE_NAME]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors (or {INDEX_NAME}) in the HF checkpoint directory {path}")
    return files


def read_hf_state_dict(path: str | Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    state = {}
    for file in safetensors_files(path):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                state[key] = tensor if dtype is None or not tensor.is_floating_point() else tensor.to(dtype)
    return state


def load_hf_weights(model: Qwen3VLModel, hf_state: dict[str, torch.Tensor], assign: bool = False) -> None:
    """Copy an HF state dict into ``model``; missing, unknown or mis-shaped keys raise a ValueError that
    lists every offending key. ``assign=True`` adopts the tensors (for a model built on the meta device)."""
    args = model.args
    state = Qwen3VLStateDictAdapter(args).from_hf(hf_state)
    tied = args.text.tie_word_embeddings
    if tied:
        # The head is the embedding; a stored copy (some exports keep one) is redundant.
        state.pop("lm_head.weight", None)
    expected = {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {missing}")
    if unexpected:
        problems.append(f"not in the model ({'MoE' if args.is_moe else 'dense'} layout): {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise ValueError("HF checkpoint does not fit the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=not tied, assign=assign)
    model.tie_weights()


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
    state = read_hf_state_dict(path, dtype)
    load_hf_weights(model, {k: v.to(device) for k, v in state.items()}, assign=True)
    model.reset_buffers(device)
    return model.eval()


def save_hf_checkpoint(
    model: Qwen3VLModel, path: str | Path, max_shard_bytes: int = 5 * 2**30, dtype: torch.dtype | None = None
) -> None:
    """Write ``config.json`` and safetensors (sharded with an index above ``max_shard_bytes``) that
    transformers' ``from_pretrained`` loads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hf_state = Qwen3VLStateDictAdapter(model.args).to_hf(model.state_dict())
    tensors = {
        k: (v if dtype is None else v.to(dtype)).detach().cpu().contiguous() for k, v in hf_state.items()
    }
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    (path / INDEX_NAME).unlink(missing_ok=True)  # a stale index would shadow the new files
    if len(shards) == 1:
        save_file(shards[0], str(path / SINGLE_NAME), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (path / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                  indent=2))
    config = model.args.to_hf_config()
    config["dtype"] = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    (path / "config.json").write_text(json.dumps(config, indent=2))
