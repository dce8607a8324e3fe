"""Qwen3 decoder layer: RMSNorm, grouped-query attention with QK-norm, SwiGLU or routed-expert MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .args import TextArgs
from .attention import attend, check_backend
from .kv_cache import KVCache
from .rope import apply_rotary

INIT_STD = 0.02


class RMSNorm(nn.Module):
    """``w * (x / rms(x))`` with the normalisation in fp32 and the weight multiply in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.weight * normed

    def init_weights(self) -> None:
        nn.init.ones_(self.weight)


class Attention(nn.Module):
    """Causal GQA with per-head RMSNorm on q and k before the rotary embedding."""

    def __init__(self, args: TextArgs, layer_id: int, backend: str = "sdpa"):
        super().__init__()
        self.layer_id = layer_id
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        self.backend = check_backend(backend)
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.q_norm = RMSNorm(args.head_dim, args.rms_norm_eps)
        self.k_norm = RMSNorm(args.head_dim, args.rms_norm_eps)

    def project_qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, D), cos/sin (B, S, head_dim) -> q (B, H, S, hd), k and v (B, KV, S, hd), rotated."""
        # QK-norm runs per head, so split the heads before normalising and move them forward after.
        q = self.q_norm(rearrange(self.wq(x), "b s (h d) -> b s h d", d=self.head_dim))
        k = self.k_norm(rearrange(self.wk(x), "b s (h d) -> b s h d", d=self.head_dim))
        v = rearrange(self.wv(x), "b s (h d) -> b h s d", d=self.head_dim)
        q, k = (rearrange(t, "b s h d -> b h s d") for t in (q, k))
        # The rotation runs in the activation dtype (cos/sin are cast down first), as in the reference.
        cos = cos.to(x.dtype).unsqueeze(1)
        sin = sin.to(x.dtype).unsqueeze(1)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def project_out(self, o: torch.Tensor) -> torch.Tensor:
        """o (B, S, H*hd) -> (B, S, D)."""
        return self.wo(o)

    def attend_and_project(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool = False
    ) -> torch.Tensor:
        """``attend`` over projected heads (q (B, H, Sq, hd), k/v (B, KV, Sk, hd)), then ``project_out``:
        -> (B, Sq, D). The step shared by this layer and the layers that mix in other keys/values."""
        o = attend(q, k, v, mask, causal=causal, backend=self.backend)
        return self.project_out(rearrange(o, "b h s d -> b s (h d)"))

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        q, k, v = self.project_qkv(x, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_id, k, v)
        # mask=None: plain causal attention over the whole (uncached) sequence.
        return self.attend_and_project(q, k, v, mask, causal=mask is None)

    def init_weights(self, std: float = INIT_STD) -> None:
        for linear in (self.wq, self.wk, self.wv, self.wo):
            nn.init.trunc_normal_(linear.weight, std=std)
        self.q_norm.init_weights()
        self.k_norm.init_weights()


class FeedForward(nn.Module):
    """SwiGLU: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))

    def init_weights(self, std: float = INIT_STD) -> None:
        for linear in (self.w1, self.w2, self.w3):
            nn.init.trunc_normal_(linear.weight, std=std)


def grouped_swiglu(
    x: torch.Tensor, offsets: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor
) -> torch.Tensor:
    """SwiGLU of each expert over its rows: x (N, D) sorted by expert, offsets (E,) int32 cumulative row
    counts, w1/w3 (E, I, D), w2 (E, D, I) -> (N, D)."""

    def grouped(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch._grouped_mm(a, w.transpose(-2, -1), offsets)

    return grouped(F.silu(grouped(x, w1)) * grouped(x, w3), w2)


class GroupedExperts(nn.Module):
    """E SwiGLU experts stored as stacked weights: w1, w3 (E, I, D) and w2 (E, D, I) (the released layout).

    ``forward`` runs all experts as three grouped matmuls over tokens sorted by expert: no loop over
    experts and no host sync (the group boundaries stay on the device).
    """

    def __init__(self, num_experts: int, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """x (N, D) sorted by expert, offsets (E,) int32 cumulative row counts -> (N, D)."""
        return grouped_swiglu(x, offsets, self.w1, self.w2, self.w3)

    def init_weights(self, std: float = INIT_STD) -> None:
        for w in (self.w1, self.w2, self.w3):
            nn.init.trunc_normal_(w, std=std)


def routing_stats(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(2, E) float32: routed (token, slot) pairs per expert and the sum of each expert's router probability
    over the tokens (probs (T, E), counts (E,)). Sums of these over layers, micro-batches and ranks give
    ``load_balancing_loss_of`` the loss of all those tokens at once."""
    return torch.stack([counts.float(), probs.float().sum(dim=0)]).detach()


def load_balancing_loss_of(stats: torch.Tensor, top_k: int) -> torch.Tensor:
    """Qwen3-MoE's auxiliary loss ``E * sum_e f_e * P_e`` from (summed) ``routing_stats``: ``f_e`` is the
    share of tokens routed to expert e (summed over the k slots) and ``P_e`` the mean router probability of
    e, over the T = pairs / k tokens (transformers' ``load_balancing_loss_func`` without a padding mask,
    which concatenates the layers' tokens the same way)."""
    pairs, prob_sums = stats
    tokens = pairs.sum() / top_k
    return stats.shape[1] * (pairs * prob_sums).sum() / tokens**2


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """``load_balancing_loss_of`` one set of router logits (T, E) (layers concatenated along T)."""
    probs = torch.softmax(router_logits.float(), dim=-1)
    chosen = torch.topk(probs, top_k, dim=-1).indices
    return load_balancing_loss_of(routing_stats(probs, torch.bincount(chosen.flatten(), minlength=probs.shape[-1])), top_k)


class MoE(nn.Module):
    """Top-k routed experts, no shared expert: softmax router in fp32, top-k weights renormalised.

    Each forward leaves its ``routing_stats`` (no gradient) in ``self.routing_stats``, for the trainer's
    load-balancing metric."""

    def __init__(self, args: TextArgs):
        super().__init__()
        self.num_experts = args.num_experts
        self.top_k = args.num_experts_per_tok
        self.routing_stats: torch.Tensor | None = None
        self.router = nn.Linear(args.dim, args.num_experts, bias=False)
        self.experts = GroupedExperts(args.num_experts, args.dim, args.moe_intermediate_size)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (T, D) -> (router probabilities (T, E) float32, top-k weights (T, k) in x's dtype, expert
        indices (T, k))."""
        probs = torch.softmax(self.router(x), dim=-1, dtype=torch.float32)
        weights, experts = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        return probs, weights, experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs, weights, experts = self.route(x)
        # Sort the (token, slot) pairs by expert; the per-expert counts stay on the device.
        flat = experts.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(self.num_experts, dtype=torch.int32, device=x.device)
        counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
        self.routing_stats = routing_stats(probs, counts)
        token = order // self.top_k
        y = self.experts(x[token], counts.cumsum(0, dtype=torch.int32)) * weights.flatten()[order, None]
        return torch.zeros_like(x).index_add_(0, token, y).view(shape)

    def init_weights(self, std: float = INIT_STD) -> None:
        nn.init.trunc_normal_(self.router.weight, std=std)
        self.experts.init_weights(std)


class PreNormBlock(nn.Module):
    """Parts of a pre-norm block (``attention_norm``, ``attention``, ``ffn_norm``, ``feed_forward``, set by
    the subclass) and their initialisation; the decoder layer and the action expert's layer share it."""

    def init_weights(self, std: float = INIT_STD) -> None:
        self.attention_norm.init_weights()
        self.ffn_norm.init_weights()
        self.attention.init_weights(std)
        self.feed_forward.init_weights(std)


class DecoderLayer(PreNormBlock):
    """Pre-norm block: ``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``."""

    def __init__(self, args: TextArgs, layer_id: int, attention_backend: str = "sdpa"):
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = RMSNorm(args.dim, args.rms_norm_eps)
        self.attention = Attention(args, layer_id, attention_backend)
        self.ffn_norm = RMSNorm(args.dim, args.rms_norm_eps)
        self.feed_forward = MoE(args) if args.is_moe_layer(layer_id) else FeedForward(args.dim, args.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, kv_cache)
        return x + self.feed_forward(self.ffn_norm(x))
