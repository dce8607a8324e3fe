"""Float8 training of the transformer blocks' linear layers through torchao (``[float8]``).

Applied first in ``parallelize_vla``, on the meta-device model, so that activation checkpointing,
compile and FSDP wrap the converted layers (torchtitan's order). Only ``nn.Linear`` layers inside the
blocks of the configured components are converted, and not the MoE router: embeddings, the LM head,
norms, the vision patch embedding and mergers, and the Action Expert's input/output heads and
projectors stay in high precision, since they are small or numerically sensitive. float8 GEMMs need
both dimensions of a weight to be multiples of 16 (32 for MXFP8); a layer that is not is left alone
and reported.

Recipes: ``tensorwise`` / ``rowwise`` / ``rowwise_with_gw_hp`` swap the layers for torchao's
``Float8Linear``; ``mxfp8`` / ``mxfp8_wgrad_with_hp`` wrap their weights for torchao's MXFP8 training
op. On CPU (no float8 kernels) the float8 and MXFP8 matmuls are emulated: the numerics are the GPU's,
the speed is not.
"""

from __future__ import annotations

import dataclasses
import importlib.util

from torch import nn

from torchtitan_vla.config.float8 import Float8
from torchtitan_vla.utils.logging import logger

LEFT_OUT = ("router",)
"""Linear layers inside blocks that stay in high precision (by their own name)."""


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def _block_layers(component: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a component view (``layers``) or of the vision encoder (``blocks``)."""
    return list(getattr(component, "layers", None) or getattr(component, "blocks", None) or [])


def float8_linears(model: nn.Module, cfg: Float8) -> dict[str, nn.Linear]:
    """FQN -> the linear layers the configuration converts (the filter, without converting anything)."""
    multiple = 32 if cfg.recipe.startswith("mxfp8") else 16
    components = model.components()
    wanted = {id(m) for name in cfg.components if name in components
              for block in _block_layers(components[name]) for m in block.modules() if type(m) is nn.Linear}
    chosen, skipped = {}, []
    for fqn, module in model.named_modules():
        if id(module) not in wanted or fqn.rsplit(".", 1)[-1] in LEFT_OUT:
            continue
        if module.in_features % multiple or module.out_features % multiple:
            skipped.append(fqn)
        else:
            chosen[fqn] = module
    if skipped:
        logger.warning(f"float8: {len(skipped)} linear layers kept in high precision (a dimension is not a "
                       f"multiple of {multiple}): {skipped[:4]}{' ...' if len(skipped) > 4 else ''}")
    return chosen


def _torchao_config(recipe: str, emulate: bool):
    if recipe.startswith("mxfp8"):
        from torchao.prototype.moe_training.config import MXFP8TrainingOpConfig, MXFP8TrainingRecipe

        name = "mxfp8_emulated_rceil" if emulate else recipe.replace("mxfp8", "mxfp8_rceil")
        if emulate and recipe != "mxfp8":
            raise ValueError(f"float8.recipe = {recipe!r} has no emulated form in torchao (use 'mxfp8' off GPU)")
        return MXFP8TrainingOpConfig.from_recipe(MXFP8TrainingRecipe(name))
    from torchao.float8 import Float8LinearConfig

    return dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), emulate=emulate)


def apply_float8(model: nn.Module, cfg: Float8, device_type: str) -> list[str]:
    """Convert the chosen linear layers in place; returns their FQNs. ImportError with the install
    command when torchao is missing."""
    if not torchao_available():
        raise ImportError("float8.enable needs torchao: pip install '.[float8]'")
    chosen = float8_linears(model, cfg)
    config = _torchao_config(cfg.recipe, emulate=device_type == "cpu")
    ids = {id(m) for m in chosen.values()}
    if cfg.recipe.startswith("mxfp8"):
        from torchao.quantization import quantize_

        quantize_(model, config, filter_fn=lambda module, fqn: id(module) in ids)
    else:
        from torchao.float8 import convert_to_float8_training

        convert_to_float8_training(model, module_filter_fn=lambda module, fqn: id(module) in ids, config=config)
    logger.info(f"float8 ({cfg.recipe}{', emulated' if device_type == 'cpu' else ''}): "
                f"{len(chosen)} linear layers of {cfg.components}")
    return sorted(chosen)
