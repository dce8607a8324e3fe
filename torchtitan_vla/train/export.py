"""Exports at the end of a job, both through the one weight writer (``parallel.weights_writer``: sharded
safetensors + ``model.safetensors.index.json``, atomic, gathered one tensor at a time from a sharded
model): ``export_policy`` for serving and ``export_hf`` (the VLM as a Hugging Face Qwen3-VL folder).

The policy folder holds the weights (the VLA's own state dict), ``config.json``, ``tokenizer.json``,
``vlm/config.json`` and, when the run uses one (``model.fast_tokenizer_path``), the FAST action tokenizer
as ``fast_tokenizer.json``.

The format is the contract with ``torchtitan_vla.serve.Policy.from_export``: config.json is the
resolved JobConfig (one key per section) plus ``camera_keys``, ``state_dim``, ``action_dim`` and
``norm_stats`` of the robot data the policy was trained on. ``vlm/config.json`` is the VLM's
architecture in Hugging Face form, and the exported ``model.hf_assets_path`` points at it (relative to
the export folder), so an export is self-contained: a run initialised from an HF folder serves on a
machine that does not have that folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from torchtitan_vla.config import JobConfig, config_to_dict
from torchtitan_vla.models.qwen3_vl.hf_checkpoint import write_hf_config
from torchtitan_vla.models.vla.hf_keys import vlm_hf_conversions
from torchtitan_vla.parallel.fsdp import dtype_from_name
from torchtitan_vla.parallel.weights_writer import DEFAULT_MAX_SHARD_BYTES, as_stored, write_weights
from torchtitan_vla.processing.fast import EXPORT_NAME as FAST_TOKENIZER_FILE
from torchtitan_vla.utils.logging import logger

VLM_CONFIG_DIR = "vlm"  # the VLM architecture (HF config.json), relative to the export folder


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
    from torchtitan_vla.data.robot import policy_extras

    src = robots[0]
    if len(robots) > 1:
        logger.warning(f"export: {len(robots)} robot sources; the policy uses the cameras and statistics of '{src.name}'")
    return policy_extras(src)


def _export_dtype(cfg_value: str) -> torch.dtype:
    return dtype_from_name(cfg_value)


def export_hf(model: nn.Module, cfg: JobConfig, folder: Path, tokenizer_file: str = "",
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """The VLM part (LoRA merged, expert left out) as an HF Qwen3-VL folder that transformers loads:
    config.json, safetensors shards + index (and tokenizer.json when given, so the folder can be a
    later run's ``model.hf_assets_path``). ``model`` may be sharded; every rank calls it."""
    dtype = _export_dtype(cfg.checkpoint.export_dtype)

    def write_files(tmp: Path) -> None:
        write_hf_config(model.vlm.args, tmp, dtype)
        if tokenizer_file:
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")

    write_weights(folder, model.vlm.state_dict(), vlm_hf_conversions(model), dtype, max_shard_bytes, write_files)
    logger.info(f"exported the VLM in Hugging Face format to {folder}")


def export_policy(model: nn.Module, cfg: JobConfig, folder: Path, tokenizer_file: str, dtype: str,
                  max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
    """Write the exported policy folder atomically: the model's state dict under its own names as
    safetensors shards + index (``model`` may be sharded; every rank calls it), config.json,
    tokenizer.json, vlm/config.json and, with FAST tokens, fast_tokenizer.json."""

    def write_files(tmp: Path) -> None:
        config = {**config_to_dict(cfg), **policy_metadata(cfg)}
        vlm = getattr(model, "vlm", None)
        if vlm is not None:
            (tmp / VLM_CONFIG_DIR).mkdir()
            (tmp / VLM_CONFIG_DIR / "config.json").write_text(json.dumps(vlm.args.to_hf_config(), indent=1))
            config["model"].update(hf_assets_path=VLM_CONFIG_DIR, load_hf_weights=False)
        if cfg.model.fast_tokenizer_path:  # the FAST tokenizer travels with the policy, like the text one
            shutil.copyfile(cfg.model.fast_tokenizer_path, tmp / FAST_TOKENIZER_FILE)
            config["model"]["fast_tokenizer_path"] = FAST_TOKENIZER_FILE
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        if tokenizer_file:
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")

    state = model.state_dict()
    write_weights(folder, state, as_stored(state), _export_dtype(dtype), max_shard_bytes, write_files)
    logger.info(f"exported policy to {folder}")
