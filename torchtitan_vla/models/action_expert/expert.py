"""The Action Expert's own modules: I/O heads, final norm, and for late fusion its context projector and layers.

In joint fusion the expert's transformer layers live inside the decoder's ``JointLayer``s (built by
``make_layer``); in late fusion they form an independent stack here.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ...config.model import ActionExpert as ActionExpertConfig
from ..qwen3_vl.args import TextArgs
from ..qwen3_vl.decoder import INIT_STD, RMSNorm
from ..qwen3_vl.masks import bidirectional_mask
from ..qwen3_vl.rope import MRoPE
from .heads import ActionHeads
from .layers import ExpertLayer
from .masks import suffix_blocks, suffix_mask
from .norms import AdaRMSNorm


def expert_text_args(decoder: TextArgs, cfg: ActionExpertConfig) -> TextArgs:
    """The expert's layer geometry: the decoder's heads, KV heads, head_dim and RoPE; its own width and MLP.

    Joint fusion shares one attention per layer, so it also takes the decoder's depth.
    """
    width = cfg.hidden_size or decoder.dim // 2
    mlp = cfg.intermediate_size or round(width * decoder.intermediate_size / decoder.dim)
    if cfg.fusion == "joint" and cfg.num_layers not in (0, decoder.n_layers):
        raise ValueError(
            f"action_expert.num_layers = {cfg.num_layers}, but joint fusion pairs every decoder layer with one "
            f"expert layer ({decoder.n_layers}); use 0 or fusion = 'late'"
        )
    depth = cfg.num_layers or decoder.n_layers
    return dataclasses.replace(decoder, dim=width, intermediate_size=mlp, n_layers=depth, num_experts=0,
                               num_experts_per_tok=0, moe_intermediate_size=0, mlp_only_layers=())


class ActionExpertModel(nn.Module):
    def __init__(self, cfg: ActionExpertConfig, decoder: TextArgs, attention_backend: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.args = expert_text_args(decoder, cfg)
        self.attention_backend = attention_backend
        self.adarms = cfg.time_conditioning == "adarms"
        late = cfg.fusion == "late"
        width = self.args.dim
        self.heads = ActionHeads(
            width=width,
            max_action_dim=cfg.max_action_dim,
            max_state_dim=cfg.max_state_dim,
            state_token=cfg.state_mode == "continuous",
            time_conditioning=cfg.time_conditioning,
            time_token=late,
            min_period=cfg.min_period,
            max_period=cfg.max_period,
        )
        self.norm = AdaRMSNorm(width, width, self.args.rms_norm_eps) if self.adarms else RMSNorm(width, self.args.rms_norm_eps)
        if late:
            self.context_proj = nn.Linear(decoder.dim, width)
            self.rope = MRoPE(self.args.head_dim, self.args.rope_theta, self.args.mrope_section)
            self.layers = nn.ModuleList(self.make_layer(i) for i in range(self.args.n_layers))

    def make_layer(self, layer_id: int) -> ExpertLayer:
        return ExpertLayer(self.args, layer_id, self.adarms, self.attention_backend)

    @property
    def num_suffix_tokens(self) -> int:
        return self.heads.num_condition_tokens + self.cfg.action_horizon

    def blocks(self) -> torch.Tensor:
        """Block numbers of the suffix tokens (see ``masks``)."""
        return suffix_blocks(self.heads.num_condition_tokens, self.cfg.action_horizon, device=self.heads.action_in_proj.weight.device)

    def velocity(self, suffix_hidden: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Expert outputs of the whole suffix -> velocities of the H action tokens (B, H, max_action_dim)."""
        actions = suffix_hidden[:, -self.cfg.action_horizon :]
        if cond is not None and cond.dim() == 3:  # per-token condition (per-step flow times)
            cond = cond[:, -self.cfg.action_horizon :]
        normed = self.norm(actions, cond)[0] if self.adarms else self.norm(actions)
        return self.heads.velocity(normed)

    def encode_context(
        self, vlm_hidden: torch.Tensor, valid: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Project the VLM's final hidden states and run them through the expert stack.

        Returns every layer's context keys/values, which the suffix tokens read. Context tokens see the
        valid context (bidirectionally) and never the suffix, so they do not depend on the flow time:
        with adaRMS they get a zero condition (the modulation's bias alone).
        """
        x = self.context_proj(vlm_hidden.to(self.context_proj.weight.dtype))
        positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
        cos, sin = self.rope(positions)
        mask = bidirectional_mask(valid, device=x.device)
        cond = x.new_zeros(x.shape[0], x.shape[-1]) if self.adarms else None
        context_kv = []
        for layer in self.layers:
            x, k, v = layer(x, cos, sin, mask, cond)
            context_kv.append((k, v))
        return context_kv

    def run_late(
        self,
        context_kv: list[tuple[torch.Tensor, torch.Tensor]],
        valid: torch.Tensor,
        suffix: torch.Tensor,
        cond: torch.Tensor | None,
    ) -> torch.Tensor:
        """Suffix tokens through the expert stack against the context k/v; positions continue after it."""
        num_suffix = suffix.shape[1]
        positions = valid.long().sum(dim=1, keepdim=True) + torch.arange(num_suffix, device=suffix.device)
        cos, sin = self.rope(positions)
        mask = suffix_mask(valid, self.blocks())
        for layer, kv in zip(self.layers, context_kv):
            suffix, _, _ = layer(suffix, cos, sin, mask, cond, kv)
        return suffix

    @torch.no_grad()
    def init_weights(self, buffer_device: torch.device | str | None = None, std: float = INIT_STD) -> None:
        """Fresh weights for the expert's own modules (joint layers are initialised by their ``JointLayer``)."""
        self.heads.init_weights()
        self.norm.init_weights()
        if self.cfg.fusion == "late":
            self.context_proj.reset_parameters()
            self.rope.reset_buffers(buffer_device)
            for layer in self.layers:
                layer.init_weights(std)
