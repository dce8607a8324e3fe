"""Construction of a VLA: its architecture (a Hugging Face ``config.json`` or a flavor), the tokenizer's
special ids, and LoRA adapters. Weights are not loaded here: the HF read path does that."""

from __future__ import annotations

from pathlib import Path

from ...config.model import Model as ModelConfig
from ...processing.fast_vocab import FastActions, load_fast_actions
from ..lora import apply_lora
from ..qwen3_vl.args import FLAVORS, Qwen3VLArgs
from ..qwen3_vl.hf_checkpoint import read_hf_config


def vlm_args(model_cfg: ModelConfig, tokenizer=None) -> Qwen3VLArgs:
    """The VLM's architecture: ``<hf_assets_path>/config.json`` when there is one, else the flavor; a
    ``tokenizer`` replaces the vision token ids (the debug tokenizer has its own)."""
    if model_cfg.hf_assets_path and (Path(model_cfg.hf_assets_path) / "config.json").is_file():
        args = read_hf_config(model_cfg.hf_assets_path)
    else:
        args = FLAVORS[model_cfg.flavor]
    if tokenizer is None:
        return args
    if tokenizer.vocab_size > args.text.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but model.flavor {model_cfg.flavor!r} "
            f"embeds only {args.text.vocab_size}"
        )
    return args.replace(
        image_token_id=tokenizer.image_pad_id,
        video_token_id=tokenizer.video_pad_id,
        vision_start_token_id=tokenizer.vision_start_id,
        vision_end_token_id=tokenizer.vision_end_id,
    )


def fast_actions(model_cfg: ModelConfig, tokenizer) -> FastActions | None:
    """``model.fast_tokenizer_path``'s FAST tokenizer placed in this architecture's vocabulary, or None."""
    if not model_cfg.fast_tokenizer_path:
        return None
    return load_fast_actions(model_cfg.fast_tokenizer_path, tokenizer, vlm_args(model_cfg).text.vocab_size)


def add_lora(vla, rank: int, alpha: float, targets: list[str], components: list[str]) -> None:
    """LoRA adapters on the named linears of the ``decoder`` and/or ``expert`` transformer layers of
    ``vla`` (recorded in ``vla.lora_components``, which ``set_trainable`` reads)."""
    parts = vla.components()
    for component in components:
        for layer in parts[component].layers:
            # A joint layer's expert half belongs to the expert component: it gets adapters only from there.
            apply_lora(layer, rank, alpha, targets, skip=("expert",))
        vla.lora_components.append(component)
