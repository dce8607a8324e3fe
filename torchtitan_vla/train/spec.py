"""The seam between the training loop and what it trains: how to build the tokenizer, the model,
its weights and the data. ``default_spec()`` wires the real VLA and data pipeline; tests plug in
small stand-ins through the same fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtitan_vla.config import JobConfig
from torchtitan_vla.parallel.fsdp import dtype_from_name
from torchtitan_vla.parallel.parallel_dims import ParallelDims
from torchtitan_vla.parallel.parallelize import parallelize_vla

from .flops import ExpertLayout


@dataclass
class TrainSpec:
    build_tokenizer: Callable[[JobConfig], Any]
    """Config -> tokenizer (or None when the model needs none)."""

    build_model: Callable[[JobConfig, Any], nn.Module]
    """(config, tokenizer) -> model; called under ``torch.device("meta")``. The model has
    ``components()``, ``blocks(name)``, ``set_trainable(names)``, ``init_weights(buffer_device)`` and
    ``forward(batch, options=ForwardOptions) -> LossSums`` (per-sample sums; see ``train/loss.py``)."""

    build_dataloader: Callable[[JobConfig, Any, int, int, str], Any]
    """(config, tokenizer, dp_rank, dp_world_size, split) -> a StatefulDataLoader of ``Batch`` objects with
    a ``source_names`` attribute (``Batch.source_id`` indexes it)."""

    expert_layout: Callable[[nn.Module], ExpertLayout | None] | None = None
    """Model -> the Action Expert's tokens per robot sample, for the FLOP count (MFU). None: the expert's
    FLOPs are not counted."""

    parallelize: Callable[[nn.Module, ParallelDims, JobConfig], nn.Module] = parallelize_vla
    """AC, compile and FSDP, applied on the meta-device model."""

    load_hf_weights: Callable[[nn.Module, str], None] | None = None
    """(model, HF folder) -> None: load the VLM part from Hugging Face safetensors (model only) into the
    parallelized, materialised model (``model.load_hf_weights`` and ``checkpoint.initial_load_format = "hf"``)."""

    export_hf: Callable[[nn.Module, JobConfig, Path], None] | None = None
    """(model, config, folder) -> None: write the VLM part in Hugging Face format (every rank calls it)."""

    tokenizer_file: Callable[[JobConfig], str] | None = None
    """Config -> path of the tokenizer.json copied into the exported policy."""


def _tokenizer_path(cfg: JobConfig) -> str:
    if cfg.model.tokenizer_path:
        return cfg.model.tokenizer_path
    if cfg.model.hf_assets_path:
        return str(Path(cfg.model.hf_assets_path) / "tokenizer.json")
    return ""


def _build_tokenizer(cfg: JobConfig):
    from torchtitan_vla.processing.tokenizer import Tokenizer

    path = _tokenizer_path(cfg)
    if not path:
        raise FileNotFoundError("model.tokenizer_path (or model.hf_assets_path) must name a tokenizer.json")
    if not Path(path).is_file():
        raise FileNotFoundError(f"model.tokenizer_path: no tokenizer.json at {path}")
    return Tokenizer.from_file(path)


def _build_model(cfg: JobConfig, tokenizer) -> nn.Module:
    from torchtitan_vla.models.vla import VLA

    return VLA.from_config(cfg.model, cfg.action_expert, tokenizer=tokenizer)


def _expert_layout(model: nn.Module) -> ExpertLayout | None:
    if model.expert is None:
        return None
    return ExpertLayout(model.expert.num_suffix_tokens, reads_context=model.expert.cfg.fusion == "late")


def _build_dataloader(cfg: JobConfig, tokenizer, dp_rank: int, dp_world_size: int, split: str):
    from torchtitan_vla.data import build_dataloader

    return build_dataloader(cfg, tokenizer, dp_rank, dp_world_size, split=split)


def _export_hf(model: nn.Module, cfg: JobConfig, folder: Path) -> None:
    """The VLM part (LoRA merged, expert left out) as an HF Qwen3-VL folder: config.json + safetensors."""
    import json
    import os
    import shutil

    from safetensors.torch import save_file

    from torchtitan_vla.utils import distributed as dist_utils

    from .export import full_state_dict

    state = full_state_dict(model, dtype_from_name(cfg.checkpoint.export_dtype, "checkpoint.export_dtype"))
    if dist_utils.rank() == 0:
        # An unsharded CPU copy on rank 0 gives the model's own HF mapping (adapter, LoRA merge).
        tokenizer = _build_tokenizer(cfg) if _tokenizer_path(cfg) else None
        with torch.device("meta"):
            copy = _build_model(cfg, tokenizer)
        copy.load_state_dict(state, assign=True)
        copy.vlm.tie_weights()
        hf_state = {k: v.contiguous() for k, v in copy.vlm_hf_state_dict().items()}
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(hf_state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = copy.vlm.args.to_hf_config()
        config["dtype"] = cfg.checkpoint.export_dtype
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    dist_utils.barrier()


def _load_hf_weights(model: nn.Module, folder: str) -> None:
    from torchtitan_vla.parallel.weights import load_vla_hf_weights

    # Per-rank slices: no rank ever holds the full VLM.
    load_vla_hf_weights(model, folder, per_rank=True)


def default_spec() -> TrainSpec:
    return TrainSpec(
        build_tokenizer=_build_tokenizer,
        build_model=_build_model,
        build_dataloader=_build_dataloader,
        expert_layout=_expert_layout,
        load_hf_weights=_load_hf_weights,
        export_hf=_export_hf,
        tokenizer_file=_tokenizer_path,
    )
