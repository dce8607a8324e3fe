"""Boolean attention masks (True = may attend), shaped (B, 1, Sq, Sk) for SDPA.

Queries are the LAST ``Sq`` of the ``Sk`` key positions (so the same helpers serve a full forward, where
Sq == Sk, and a KV-cached decode step, where the earlier keys come from the cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _key_padding(padding_mask: torch.Tensor | None, batch_size: int, kv_len: int, device) -> torch.Tensor:
    if padding_mask is None:
        return torch.ones(batch_size, kv_len, dtype=torch.bool, device=device)
    if padding_mask.shape != (batch_size, kv_len):
        raise ValueError(f"padding mask has shape {tuple(padding_mask.shape)}, expected {(batch_size, kv_len)}")
    return padding_mask.to(device=device, dtype=torch.bool)


def build_mask(
    padding_mask: torch.Tensor | None = None,
    doc_ids: torch.Tensor | None = None,
    *,
    batch_size: int | None = None,
    kv_len: int | None = None,
    q_len: int | None = None,
    causal: bool | torch.Tensor = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mask of shape (B, 1, Sq, Sk).

    Args:
        padding_mask: (B, Sk) bool/0-1, False = padding key.
        doc_ids: (B, Sk) packed-document index; a query sees only keys of its own document.
        batch_size, kv_len: needed only when neither ``padding_mask`` nor ``doc_ids`` is given.
        q_len: number of queries (the last ``q_len`` key positions); default ``kv_len``.
        causal: a query sees keys at its own position or earlier; False = bidirectional; a (B,) bool tensor
            chooses per sample (pi0's prefix-LM for robot samples beside causal web samples in one batch).
    """
    ref = padding_mask if padding_mask is not None else doc_ids
    if ref is not None:
        batch_size, kv_len = ref.shape
        device = device or ref.device
    if batch_size is None or kv_len is None:
        raise ValueError("build_mask needs padding_mask, doc_ids, or batch_size and kv_len")
    q_len = kv_len if q_len is None else q_len
    keys = _key_padding(padding_mask, batch_size, kv_len, device)
    mask = keys[:, None, None, :].expand(batch_size, 1, q_len, kv_len)
    if isinstance(causal, torch.Tensor) or causal:
        q_pos = torch.arange(kv_len - q_len, kv_len, device=device)
        k_pos = torch.arange(kv_len, device=device)
        earlier = k_pos[None, :] <= q_pos[:, None]
        if isinstance(causal, torch.Tensor):
            earlier = earlier | ~causal.to(device=device, dtype=torch.bool)[:, None, None, None]
        mask = mask & earlier
    if doc_ids is not None:
        if doc_ids.shape != (batch_size, kv_len):
            raise ValueError(f"doc_ids has shape {tuple(doc_ids.shape)}, expected {(batch_size, kv_len)}")
        doc_ids = doc_ids.to(device)
        mask = mask & (doc_ids[:, None, kv_len - q_len :, None] == doc_ids[:, None, None, :])
    return allow_self(mask)


def causal_after_targets(mask: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """A prefix-LM ``mask`` (B, 1, S, S) in which the text a row predicts stays causal: every token after the
    row's first labelled position (``labelled`` (B, S) bool; a robot sample's subtask) is seen only by itself
    and later tokens, so no prompt token reads what it has to predict."""
    seen = labelled.long().cumsum(dim=1)
    target = F.pad(seen[:, :-1], (1, 0)) > 0  # (B, S): a token some earlier position predicts
    positions = torch.arange(labelled.shape[1], device=mask.device)
    earlier = positions[None, :] <= positions[:, None]
    return allow_self(mask & (earlier | ~target.to(mask.device)[:, None, None, :]))


def causal_mask(padding_mask=None, doc_ids=None, **kwargs) -> torch.Tensor:
    """The decoder's mask: causal, restricted to the padding mask and to each packed document."""
    return build_mask(padding_mask, doc_ids, causal=True, **kwargs)


def bidirectional_mask(padding_mask=None, doc_ids=None, **kwargs) -> torch.Tensor:
    """Full attention among valid keys (and within each packed document)."""
    return build_mask(padding_mask, doc_ids, causal=False, **kwargs)


def allow_self(mask: torch.Tensor) -> torch.Tensor:
    """Let a query whose row is entirely masked (a padding query) attend to its own position.

    Such rows would otherwise make SDPA produce NaN, which then leaks into gradients; their outputs are
    never used, so what they attend to does not matter.
    """
    q_len, kv_len = mask.shape[-2:]
    empty = ~mask.any(dim=-1, keepdim=True)  # (B, 1, Sq, 1); no host sync: always merged in
    diagonal = torch.zeros(q_len, kv_len, dtype=torch.bool, device=mask.device)
    diagonal[torch.arange(q_len), torch.arange(kv_len - q_len, kv_len)] = True
    return mask | (empty & diagonal)
