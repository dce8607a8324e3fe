"""Greedy decoding with a KV cache, so the VLM can be evaluated as a VLM (captioning, VQA)."""

from __future__ import annotations

import torch

from .kv_cache import KVCache
from .masks import causal_mask
from .model import Qwen3VLModel


@torch.no_grad()
def generate(
    model: Qwen3VLModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pixel_values: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    pixel_values_videos: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    max_new_tokens: int = 32,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
) -> torch.Tensor:
    """Greedy continuation (B, n_new) of left-padded prompts (B, S).

    Vision features and DeepStack enter only at prefill; every decoded token sits one position past the
    previous one on all three MRoPE rows, starting right after the prompt's largest position. Rows that
    produced ``eos_token_id`` continue with ``pad_token_id``; decoding stops once every row has.
    """
    bsz = input_ids.shape[0]
    device = input_ids.device
    padding = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if attention_mask is not None and bool((~padding[:, -1]).any()):
        raise ValueError("generate needs left-padded prompts (the last column of attention_mask must be 1)")
    cache = KVCache(len(model.layers))

    # Positions are computed here (not inside hidden_states) because decoding continues from them.
    position_ids, _ = model.position_ids(input_ids, attention_mask, image_grid_thw, video_grid_thw)
    position_ids = position_ids.to(device)
    h = model.hidden_states(
        input_ids, attention_mask, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw,
        position_ids=position_ids, kv_cache=cache,
    )
    next_position = position_ids.amax(dim=(0, 2)) + 1  # (B,)

    no_visual = torch.zeros(bsz, 1, dtype=torch.bool, device=device)
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    tokens = []
    for _ in range(max_new_tokens):
        token = model.lm_head(h[:, -1]).argmax(dim=-1)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        if eos_token_id is not None:
            finished |= token == eos_token_id
            if bool(finished.all()):
                break
        padding = torch.cat((padding, torch.ones(bsz, 1, dtype=torch.bool, device=device)), dim=1)
        cos, sin = model.rotary(next_position.view(1, bsz, 1).expand(3, bsz, 1))
        h = model.run_layers(
            model.tok_embeddings(token[:, None]), cos, sin, causal_mask(padding, q_len=1), no_visual, [], cache
        )
        next_position = next_position + 1
    return torch.stack(tokens, dim=1)
