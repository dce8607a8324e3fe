"""The seam between the training loop and what it trains: how to build the tokenizer, the model,
its weights and the data. ``default_spec()`` wires the real VLA and data pipeline; tests plug in
small stand-ins through the same fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from torchtitan_vla.config import JobConfig
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
    ``source_names`` (``Batch.source_id`` indexes it) and ``skipped_per_source`` (examples each source has
    skipped so far, restored with the loader's state)."""

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


def _load_hf_weights(model: nn.Module, folder: str) -> None:
    from torchtitan_vla.models.vla.hf_keys import load_vlm_hf

    # Per-rank slices: no rank ever holds the full VLM.
    load_vlm_hf(model, folder)


def _export_hf(model: nn.Module, cfg: JobConfig, folder: Path) -> None:
    from .export import export_hf

    export_hf(model, cfg, folder, tokenizer_file=_tokenizer_path(cfg))


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
