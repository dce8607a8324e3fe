"""Export of the trained policy for serving: ``model.safetensors`` + ``config.json`` + ``tokenizer.json``
+ ``vlm/config.json``.

The format is the contract with ``torchtitan_vla.serve.Policy.from_export``: config.json is the
resolved JobConfig (one key per section) plus ``camera_keys``, ``state_dim``, ``action_dim`` and
``norm_stats`` of the robot data the policy was trained on. ``vlm/config.json`` is the VLM's
architecture in Hugging Face form, and the exported ``model.hf_assets_path`` points at it (relative to
the export folder), so an export is self-contained: a run initialised from an HF folder serves on a
machine that does not have that folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from torchtitan_vla.config import JobConfig, config_to_dict
from torchtitan_vla.parallel.fsdp import dtype_from_name
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import logger

VLM_CONFIG_DIR = "vlm"  # the VLM architecture (HF config.json), relative to the export folder


def _as_lists(stats: dict) -> dict:
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in (stats or {}).items()}


def policy_metadata(cfg: JobConfig) -> dict:
    """Cameras, real state/action widths and normalization statistics of the stage's robot source.

    Serving handles one robot, so the first LeRobot source of the mixture defines them; a mixture
    without robot data (a VLM-only stage) exports empty ones.
    """
    weights = cfg.data.mixture or {s.name: 1.0 for s in cfg.data.sources}
    robots = [s for s in cfg.data.sources if s.kind == "lerobot" and weights.get(s.name, 0) > 0]
    if not robots:
        return {"camera_keys": [], "state_dim": 0, "action_dim": 0,
                "norm_stats": {"mode": "none", "state": {}, "action": {}}}
    from torchtitan_vla.data.lerobot import LeRobotReader
    from torchtitan_vla.data.normalize import load_stats_file

    src = robots[0]
    if len(robots) > 1:
        logger.warning(f"export: {len(robots)} robot sources; the policy uses the cameras and statistics of '{src.name}'")
    reader = LeRobotReader(src.path, src.state_key, src.action_key, src.camera_keys, src.episodes)
    stats = load_stats_file(src.stats_path) if src.stats_path else reader.stats()
    return {
        "camera_keys": reader.camera_keys,
        "state_dim": int(reader.state.shape[1]),
        "action_dim": int(reader.action.shape[1]),
        "norm_stats": {
            "mode": src.normalization,
            "state": _as_lists(stats.get(src.state_key)),
            "action": _as_lists(stats.get(src.action_key)),
        },
    }


def full_state_dict(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The unsharded state dict on rank 0's CPU (a collective: every rank must call it)."""
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    out, seen = {}, {}
    for name, tensor in state.items():
        tensor = tensor.to(dtype) if tensor.is_floating_point() else tensor
        # safetensors refuses aliased tensors (tied embeddings): store each name's own copy.
        ptr = tensor.data_ptr()
        out[name] = tensor.clone().contiguous() if ptr in seen else tensor.contiguous()
        seen[ptr] = name
    return out


def export_policy(model: nn.Module, cfg: JobConfig, folder: Path, tokenizer_file: str, dtype: str) -> None:
    """Write the exported policy folder atomically (a temp folder renamed at the end); every rank calls it."""
    state = full_state_dict(model, dtype_from_name(dtype, "checkpoint.export_dtype"))
    if dist_utils.rank() == 0:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(state, str(tmp / "model.safetensors"))
        config = {**config_to_dict(cfg), **policy_metadata(cfg)}
        vlm = getattr(model, "vlm", None)
        if vlm is not None:
            (tmp / VLM_CONFIG_DIR).mkdir()
            (tmp / VLM_CONFIG_DIR / "config.json").write_text(json.dumps(vlm.args.to_hf_config(), indent=1))
            config["model"].update(hf_assets_path=VLM_CONFIG_DIR, load_hf_weights=False)
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        if tokenizer_file:
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        logger.info(f"exported policy to {folder}")
    dist_utils.barrier()
