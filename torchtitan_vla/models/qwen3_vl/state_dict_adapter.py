"""Key and layout conversion between HF Qwen3-VL safetensors and this package's module tree.

HF -> native renames (decoder layer l, ViT block i):
    model.language_model.layers.l.self_attn.{q,k,v,o}_proj   -> layers.l.attention.{wq,wk,wv,wo}
    model.language_model.layers.l.self_attn.{q,k}_norm       -> layers.l.attention.{q,k}_norm
    model.language_model.layers.l.{input,post_attention}_layernorm -> layers.l.{attention,ffn}_norm
    model.language_model.layers.l.mlp.{gate,up,down}_proj    -> layers.l.feed_forward.{w1,w3,w2}
    model.language_model.layers.l.mlp.gate                   -> layers.l.feed_forward.router
    model.language_model.layers.l.mlp.experts.gate_up_proj   -> layers.l.feed_forward.experts.{w1,w3}
    model.language_model.layers.l.mlp.experts.down_proj      -> layers.l.feed_forward.experts.w2
    model.language_model.{embed_tokens,norm}                 -> {tok_embeddings,norm}
    model.visual.patch_embed.proj (Conv3d)                   -> vision_encoder.patch_embed (Linear)
    model.visual.blocks.i.attn.qkv (fused, q|k|v rows)       -> vision_encoder.blocks.i.attn.{q,k,v}_proj
    model.visual.deepstack_merger_list.k                     -> vision_encoder.deepstack_mergers.k
    model.visual.*                                           -> vision_encoder.*
    lm_head                                                  -> lm_head

Fused expert tensors come in two layouts: the hub's (E, D, 2I) / (E, I, D) and the (E, 2I, D) / (E, D, I)
that transformers 5.x writes; the layout is told apart by shape (like transformers, the in-memory 5.x
layout wins if the shape is ambiguous, which no release is). Export writes the hub layout.
"""

from __future__ import annotations

import re

import torch

from .args import Qwen3VLArgs

_LM = "model.language_model."
_VIS = "model.visual."
_LAYER = _LM + "layers.{}."

# (HF name, native name) for plain renames; "{}" stands for a layer/block/level index.
_RENAMES: list[tuple[str, str]] = [
    (_LM + "embed_tokens.weight", "tok_embeddings.weight"),
    (_LM + "norm.weight", "norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
    (_LAYER + "input_layernorm.weight", "layers.{}.attention_norm.weight"),
    (_LAYER + "post_attention_layernorm.weight", "layers.{}.ffn_norm.weight"),
    (_LAYER + "self_attn.q_proj.weight", "layers.{}.attention.wq.weight"),
    (_LAYER + "self_attn.k_proj.weight", "layers.{}.attention.wk.weight"),
    (_LAYER + "self_attn.v_proj.weight", "layers.{}.attention.wv.weight"),
    (_LAYER + "self_attn.o_proj.weight", "layers.{}.attention.wo.weight"),
    (_LAYER + "self_attn.q_norm.weight", "layers.{}.attention.q_norm.weight"),
    (_LAYER + "self_attn.k_norm.weight", "layers.{}.attention.k_norm.weight"),
    (_LAYER + "mlp.gate_proj.weight", "layers.{}.feed_forward.w1.weight"),
    (_LAYER + "mlp.up_proj.weight", "layers.{}.feed_forward.w3.weight"),
    (_LAYER + "mlp.down_proj.weight", "layers.{}.feed_forward.w2.weight"),
    (_LAYER + "mlp.gate.weight", "layers.{}.feed_forward.router.weight"),
    (_VIS + "patch_embed.proj.bias", "vision_encoder.patch_embed.bias"),
    (_VIS + "pos_embed.weight", "vision_encoder.pos_embed.weight"),
]
for _p in ("weight", "bias"):
    for _name in ("norm1", "norm2", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"):
        _RENAMES.append((f"{_VIS}blocks.{{}}.{_name}.{_p}", f"vision_encoder.blocks.{{}}.{_name}.{_p}"))
    for _name in ("norm", "linear_fc1", "linear_fc2"):
        _RENAMES.append((f"{_VIS}merger.{_name}.{_p}", f"vision_encoder.merger.{_name}.{_p}"))
        _RENAMES.append((f"{_VIS}deepstack_merger_list.{{}}.{_name}.{_p}",
                         f"vision_encoder.deepstack_mergers.{{}}.{_name}.{_p}"))


def _matcher(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{\}", r"(\d+)"))


_PATCH_EMBED = _matcher(_VIS + "patch_embed.proj.weight")
_GATE_UP = _matcher(_LAYER + "mlp.experts.gate_up_proj")
_DOWN = _matcher(_LAYER + "mlp.experts.down_proj")
_QKV = re.compile(re.escape(_VIS) + r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")
_QKV_PARTS = re.compile(r"vision_encoder\.blocks\.(\d+)\.attn\.([qkv])_proj\.(weight|bias)")


def _rename(key: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in table:
        if m := pattern.fullmatch(key):
            return template.format(*m.groups())
    return None


class Qwen3VLStateDictAdapter:
    """``from_hf`` / ``to_hf`` for one set of model arguments."""

    def __init__(self, args: Qwen3VLArgs):
        self.args = args
        self._from_hf_table = [(_matcher(hf), native) for hf, native in _RENAMES]
        self._to_hf_table = [(_matcher(native), hf) for hf, native in _RENAMES]

    def from_hf(self, hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename and reshape an HF state dict. Unknown keys raise a ValueError listing all of them."""
        out: dict[str, torch.Tensor] = {}
        unknown = []
        for key, tensor in hf_state.items():
            if _PATCH_EMBED.fullmatch(key):
                out["vision_encoder.patch_embed.weight"] = tensor.reshape(tensor.shape[0], -1)
            elif m := _GATE_UP.fullmatch(key):
                w1, w3 = self._split_gate_up(key, tensor)
                out[f"layers.{m[1]}.feed_forward.experts.w1"] = w1
                out[f"layers.{m[1]}.feed_forward.experts.w3"] = w3
            elif m := _DOWN.fullmatch(key):
                out[f"layers.{m[1]}.feed_forward.experts.w2"] = self._down(key, tensor)
            elif m := _QKV.fullmatch(key):
                for part, rows in zip("qkv", tensor.chunk(3, dim=0)):
                    out[f"vision_encoder.blocks.{m[1]}.attn.{part}_proj.{m[2]}"] = rows
            elif (name := _rename(key, self._from_hf_table)) is not None:
                out[name] = tensor
            else:
                unknown.append(key)
        if unknown:
            raise ValueError(f"unknown keys in the HF checkpoint (not part of Qwen3-VL): {sorted(unknown)}")
        return out

    def _split_gate_up(self, key: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, i = self.args.text.dim, self.args.text.moe_intermediate_size
        if t.dim() == 3 and t.shape[1:] == (2 * i, d):  # transformers 5.x layout
            fused = t
        elif t.dim() == 3 and t.shape[1:] == (d, 2 * i):  # hub layout
            fused = t.transpose(1, 2)
        else:
            raise ValueError(f"{key} has shape {tuple(t.shape)}; expected (E, {d}, {2 * i}) or (E, {2 * i}, {d})")
        return fused[:, :i].contiguous(), fused[:, i:].contiguous()

    def _down(self, key: str, t: torch.Tensor) -> torch.Tensor:
        d, i = self.args.text.dim, self.args.text.moe_intermediate_size
        if t.dim() == 3 and t.shape[1:] == (d, i):  # transformers 5.x layout
            return t
        if t.dim() == 3 and t.shape[1:] == (i, d):  # hub layout
            return t.transpose(1, 2).contiguous()
        raise ValueError(f"{key} has shape {tuple(t.shape)}; expected (E, {i}, {d}) or (E, {d}, {i})")

    def to_hf(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """HF hub-layout state dict; the tied LM head is left out (HF re-ties it from the embedding)."""
        out: dict[str, torch.Tensor] = {}
        v = self.args.vision
        experts: dict[str, dict[str, torch.Tensor]] = {}
        qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key, tensor in state.items():
            if key == "lm_head.weight" and self.args.text.tie_word_embeddings:
                continue
            if key == "vision_encoder.patch_embed.weight":
                shape = (tensor.shape[0], v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
                out["model.visual.patch_embed.proj.weight"] = tensor.reshape(shape)
            elif m := re.fullmatch(r"layers\.(\d+)\.feed_forward\.experts\.(w1|w2|w3)", key):
                experts.setdefault(m[1], {})[m[2]] = tensor
            elif m := _QKV_PARTS.fullmatch(key):
                qkv.setdefault((m[1], m[3]), {})[m[2]] = tensor
            elif (name := _rename(key, self._to_hf_table)) is not None:
                out[name] = tensor
            else:
                raise ValueError(f"no HF name for the model key {key!r}")
        for layer, w in sorted(experts.items(), key=lambda kv: int(kv[0])):
            prefix = f"model.language_model.layers.{layer}.mlp.experts."
            out[prefix + "gate_up_proj"] = torch.cat((w["w1"], w["w3"]), dim=1).transpose(1, 2).contiguous()
            out[prefix + "down_proj"] = w["w2"].transpose(1, 2).contiguous()
        for (block, kind), parts in qkv.items():
            out[f"{_VIS}blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in "qkv"])
        return out

