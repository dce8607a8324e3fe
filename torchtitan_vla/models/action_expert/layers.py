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
    apart from the extra ``expert.*`` entries. One method per use:

    * ``forward(x, cos, sin, mask, kv_cache)`` -> x: the plain decoder layer (VLM-only batches,
      ``Qwen3VLModel.forward``, and filling the prefix KV cache before sampling);
    * ``forward_joint(x, expert_x, cos, sin, mask, expert_inputs)`` -> (x, expert_x): both halves, the
      expert tokens reading this layer's prefix keys/values (training, uncached sampling);
    * ``forward_cached(expert_x, kv_cache, expert_inputs)`` -> expert_x: the expert half alone against
      the cached prefix keys/values (each Euler step of cached sampling).
    """

    forward_methods = ("forward", "forward_joint", "forward_cached")
    """Every entry point: checkpointing, compilation and FSDP's hooks must wrap each (parallel/)."""

    def __init__(self, args: TextArgs, layer_id: int, expert: ExpertLayer, attention_backend: str = "sdpa"):
        super().__init__(args, layer_id, attention_backend)
        self.expert = expert

    def forward_joint(
        self,
        x: torch.Tensor,
        expert_x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        expert_inputs: ExpertInputs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix hidden states x (B, P, D) and expert tokens (B, S, W) through this layer."""
        q, k, v = self.attention.project_qkv(self.attention_norm(x), cos, sin)
        x = x + self.attention.attend_and_project(q, k, v, mask)
        x = x + self.feed_forward(self.ffn_norm(x))
        return x, self._expert_step(expert_x, k, v, expert_inputs)

    def forward_cached(self, expert_x: torch.Tensor, kv_cache: KVCache, expert_inputs: ExpertInputs) -> torch.Tensor:
        """Expert tokens (B, S, W) through this layer against the prefix keys/values in ``kv_cache``."""
        k, v = kv_cache.keys[self.layer_id], kv_cache.values[self.layer_id]
        if k is None:
            raise ValueError(f"the KV cache holds no prefix keys for layer {self.layer_id}; fill it with forward first")
        return self._expert_step(expert_x, k, v, expert_inputs)

    def _expert_step(self, expert_x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: ExpertInputs) -> torch.Tensor:
        if inputs.insulate:
            k, v = k.detach(), v.detach()
        expert_x, _, _ = self.expert(expert_x, inputs.cos, inputs.sin, inputs.mask, inputs.cond, (k, v))
        return expert_x

    def init_weights(self, std: float = INIT_STD) -> None:
        super().init_weights(std)
        self.expert.init_weights(std)
