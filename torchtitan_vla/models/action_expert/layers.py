"""Expert transformer layers and the joint (mixture-of-transformers) layer of pi0.

Both fusions run the expert tokens against keys/values of a context that never looks back at them: the
VLM prefix (joint fusion) or the projected VLM hidden states (late fusion). So the context half of a
layer is computed on its own (causal/bidirectional among itself) and the expert half attends over
``[context k/v | expert k/v]``. This is the same function as one attention over the concatenated
sequence with pi0's block mask, costs ``P^2 + S(P+S)`` instead of ``(P+S)^2`` scores, lets knowledge
insulation detach only the copy of the context k/v that the expert reads, and makes the cached sampling
step literally the second half of the training computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..qwen3_vl.args import TextArgs
from ..qwen3_vl.decoder import INIT_STD, Attention, DecoderLayer, FeedForward, PreNormBlock, RMSNorm
from ..qwen3_vl.kv_cache import KVCache
from .norms import AdaRMSNorm


@dataclass
class ExpertInputs:
    """What the expert half of every layer shares: rotary angles, mask and conditioning."""

    cos: torch.Tensor
    """(B, S, head_dim) rotary cos of the expert tokens."""
    sin: torch.Tensor
    """(B, S, head_dim) rotary sin of the expert tokens."""
    mask: torch.Tensor
    """(B, 1, S, P + S) bool: expert queries over [context keys | expert keys]."""
    cond: torch.Tensor | None = None
    """(B, W) or (B, S, W) adaRMS condition; None without adaRMS."""
    insulate: bool = False
    """Knowledge insulation: the expert reads a detached copy of the context keys/values."""


class ExpertLayer(PreNormBlock):
    """A Qwen3 block of the expert's width whose attention runs in the decoder's head space.

    Same parts as ``DecoderLayer`` (RMSNorm, GQA with QK-norm and RoPE, SwiGLU), own weights; with
    ``adarms`` both norms are adaptive and their gates scale the residual branches.
    """

    def __init__(self, args: TextArgs, layer_id: int, adarms: bool, attention_backend: str = "sdpa"):
        super().__init__()
        self.adarms = adarms
        self.attention_norm = self._make_norm(args)
        self.attention = Attention(args, layer_id, attention_backend)
        self.ffn_norm = self._make_norm(args)
        self.feed_forward = FeedForward(args.dim, args.intermediate_size)

    def _make_norm(self, args: TextArgs) -> nn.Module:
        return AdaRMSNorm(args.dim, args.dim, args.rms_norm_eps) if self.adarms else RMSNorm(args.dim, args.rms_norm_eps)

    def _norm(self, norm: nn.Module, x: torch.Tensor, cond: torch.Tensor | None):
        if self.adarms:
            return norm(x, cond)
        return norm(x), None

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cond: torch.Tensor | None = None,
        context_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (new x, this layer's k and v of x). Keys are ``[context_kv | own]`` when a context is given."""
        y, gate = self._norm(self.attention_norm, x, cond)
        q, k, v = self.attention.project_qkv(y, cos, sin)
        keys, values = k, v
        if context_kv is not None:
            keys = torch.cat([context_kv[0].to(k.dtype), k], dim=2)
            values = torch.cat([context_kv[1].to(v.dtype), v], dim=2)
        branch = self.attention.attend_and_project(q, keys, values, mask)
        x = x + (branch if gate is None else branch * gate)
        y, gate = self._norm(self.ffn_norm, x, cond)
        branch = self.feed_forward(y)
        return x + (branch if gate is None else branch * gate), k, v


class JointLayer(DecoderLayer):
    """Decoder layer i and expert layer i as one module (the FSDP / activation-checkpointing unit).

    The decoder half keeps ``DecoderLayer``'s parameter names, so the VLM's state dict is unchanged
    apart from the extra ``expert.*`` entries, and ``Qwen3VLModel.forward`` still runs (prefix only).
    """

    def __init__(self, args: TextArgs, layer_id: int, expert: ExpertLayer, attention_backend: str = "sdpa"):
        super().__init__(args, layer_id, attention_backend)
        self.expert = expert

    def forward(
        self,
        x: torch.Tensor | None,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
        expert_x: torch.Tensor | None = None,
        expert_inputs: ExpertInputs | None = None,
    ):
        """Without ``expert_x``: the plain decoder layer (writes the prefix k/v into ``kv_cache`` if given).

        With ``expert_x``: returns ``(x, expert_x)``. ``x=None`` means the prefix is not recomputed and its
        k/v are read from ``kv_cache`` (cached sampling).
        """
        if expert_x is None:
            return super().forward(x, cos, sin, mask, kv_cache)
        if x is None:
            if kv_cache is None:
                raise ValueError("JointLayer needs either the prefix hidden states or a filled kv_cache")
            k, v = kv_cache.keys[self.layer_id], kv_cache.values[self.layer_id]
        else:
            q, k, v = self.attention.project_qkv(self.attention_norm(x), cos, sin)
            x = x + self.attention.attend_and_project(q, k, v, mask)
            x = x + self.feed_forward(self.ffn_norm(x))
        if expert_inputs.insulate:
            k, v = k.detach(), v.detach()
        expert_x, _, _ = self.expert(
            expert_x, expert_inputs.cos, expert_inputs.sin, expert_inputs.mask, expert_inputs.cond, (k, v)
        )
        return x, expert_x

    def init_weights(self, std: float = INIT_STD) -> None:
        super().init_weights(std)
        self.expert.init_weights(std)
