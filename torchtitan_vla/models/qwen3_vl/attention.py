"""Attention kernels behind one call: SDPA with an explicit boolean mask (default) or FlexAttention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "flex")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    return name


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    causal: bool = False,
    backend: str = "sdpa",
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with grouped-query heads.

    q (B, H, Sq, d); k, v (B, KV, Sk, d); mask bool (B or 1, 1, Sq, Sk), True = may attend. With
    ``mask=None``: plain causal attention if ``causal`` (Sq == Sk; lets SDPA pick its fastest kernel), else
    full attention. Returns (B, H, Sq, d).
    """
    gqa = q.shape[1] != k.shape[1]
    if causal and mask is not None:
        raise ValueError("pass either an explicit mask or causal=True, not both")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal=True needs as many queries as keys (got {q.shape[2]} vs {k.shape[2]}); "
                         "pass an explicit mask when decoding with a KV cache")
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
    if backend == "flex":
        return _flex(q, k, v, mask, causal, gqa)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")


def _flex(q, k, v, mask, causal, gqa):
    if q.device.type != "cuda":
        raise RuntimeError(
            f"attention_backend='flex' needs a CUDA device (got {q.device}); use attention_backend='sdpa' on CPU"
        )
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    block_mask = None
    if causal:

        def mask_mod(b, h, q_idx, kv_idx):
            return q_idx >= kv_idx

        block_mask = create_block_mask(mask_mod, None, None, q.shape[2], k.shape[2], device=q.device)
    elif mask is not None:
        dense = mask.expand(q.shape[0], 1, q.shape[2], k.shape[2])

        def mask_mod(b, h, q_idx, kv_idx):
            return dense[b, 0, q_idx, kv_idx]

        block_mask = create_block_mask(mask_mod, q.shape[0], None, q.shape[2], k.shape[2], device=q.device)
    return flex_attention(q, k, v, block_mask=block_mask, enable_gqa=gqa)
