"""The parts protocol the parallelism, the optimizer and freezing use: ``components()`` (a view over
each part's parameters), ``blocks(name)`` (the FSDP / activation-checkpointing / compile units) and
``set_trainable(names)``.

``VLAParts`` is mixed into ``VLA``; it reads ``vlm``, ``expert``, ``expert_cfg`` and ``lora_components``.
"""

from __future__ import annotations

from torch import nn

from ..action_expert.layers import JointLayer
from ..lora import is_lora_parameter

COMPONENTS = ("vision", "decoder", "expert")


class ComponentView(nn.Module):
    """Groups modules that the VLA owns elsewhere (a view for freezing and parameter groups; it is not
    registered in the VLA, so it adds no state-dict entries)."""

    def __init__(self, **parts: nn.Module | list[nn.Module]):
        super().__init__()
        for name, part in parts.items():
            setattr(self, name, nn.ModuleList(part) if isinstance(part, list) else part)


class VLAParts:
    def components(self) -> dict[str, nn.Module]:
        """``vision``, ``decoder`` and (when enabled) ``expert``: views over the parameters of each part."""
        vlm = self.vlm
        parts: dict[str, nn.Module] = {
            "vision": vlm.vision_encoder,
            "decoder": ComponentView(
                tok_embeddings=vlm.tok_embeddings, layers=[_decoder_half(layer) for layer in vlm.layers],
                norm=vlm.norm, lm_head=vlm.lm_head,
            ),
        }
        if self.expert is not None:
            joint = self.expert_cfg.fusion == "joint"
            layers = [layer.expert for layer in vlm.layers] if joint else list(self.expert.layers)
            heads = {} if joint else {"context_proj": self.expert.context_proj}
            parts["expert"] = ComponentView(layers=layers, heads=self.expert.heads, norm=self.expert.norm, **heads)
        return parts

    def blocks(self, component: str) -> list[nn.Module]:
        """The FSDP / activation-checkpointing / compile units of a component.

        Joint fusion: the decoder's blocks are the joint layers (decoder layer i + expert layer i), so
        ``blocks("expert")`` is empty. Late fusion: decoder layers and expert layers separately.
        """
        if component == "vision":
            return list(self.vlm.vision_encoder.blocks)
        if component == "decoder":
            return list(self.vlm.layers)
        if component == "expert":
            if self.expert is None or self.expert_cfg.fusion == "joint":
                return []
            return list(self.expert.layers)
        raise ValueError(f"unknown component {component!r}; choose one of {COMPONENTS}")

    def set_trainable(self, trainable: list[str]) -> None:
        """Freeze every component not in ``trainable`` (``training.trainable``).

        A component with LoRA adapters trains only its adapters in its transformer layers (and, for the
        decoder, keeps embeddings, final norm and LM head frozen); the expert's heads, final norm and
        context projector always train with the expert.
        """
        for name, part in self.components().items():
            for param_name, param in part.named_parameters():
                train = name in trainable
                if train and name in self.lora_components:
                    in_layers = param_name.startswith("layers.")
                    train = is_lora_parameter(param_name) or (name == "expert" and not in_layers)
                param.requires_grad_(train)


def _decoder_half(layer: nn.Module) -> nn.Module:
    """The decoder half of a layer: a ``DecoderLayer`` itself, or a joint layer without its ``expert``."""
    if isinstance(layer, JointLayer):
        return ComponentView(attention_norm=layer.attention_norm, attention=layer.attention,
                             ffn_norm=layer.ffn_norm, feed_forward=layer.feed_forward)
    return layer
