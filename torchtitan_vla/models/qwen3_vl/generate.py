"""Greedy decoding: one loop (``greedy_loop``) shared by the plain VLM (``generate``: captioning, VQA) and
the VLA (``models/vla/generate.py``: subtask text, FAST tokens), which differ only in how one step runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .kv_cache import KVCache
from .masks import causal_mask
from .model import Qwen3VLModel

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``step(token (B,), fed_valid (B,) bool) -> final-norm hidden state (B, D)`` of that token: appends one
token per row (``fed_valid`` False: a pad after the row's stop, no key anyone may attend to)."""


@dataclass
class Greedy:
    tokens: torch.Tensor
    """(B, T) long, ``pad_token_id`` after each row's stop token."""
    lengths: torch.Tensor
    """(B,) long: tokens of each row up to and including its stop token."""


def last_valid(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, D): each row's hidden state at its last valid position (left or right padding alike)."""
    index = torch.arange(valid.shape[1], device=valid.device).masked_fill(~valid.bool(), -1).amax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def greedy_loop(
    lm_head: Callable[[torch.Tensor], torch.Tensor],
    hidden: torch.Tensor,
    step: StepFn,
    max_new_tokens: int,
    *,
    allowed_token_ids: torch.Tensor | None = None,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    feed_last: bool = False,
) -> Greedy:
    """Greedy tokens from the prompt's last hidden state ``hidden`` (B, D), batched with a per-row stop.

    ``allowed_token_ids``: the argmax runs over these ids (and the stop ids) only. ``feed_last``: the final
    token is also stepped, so a caller's cache holds every generated token (the stop token included);
    plain decoding skips that step, whose output nobody reads.
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    bsz, device = hidden.shape[0], hidden.device
    stops = torch.tensor(list(stop_token_ids), dtype=torch.long, device=device)
    blocked = None
    if allowed_token_ids is not None:
        vocab = lm_head(hidden[:1]).shape[-1]
        allowed = torch.cat((allowed_token_ids.to(device=device, dtype=torch.long).flatten(), stops))
        if bool(((allowed < 0) | (allowed >= vocab)).any()):
            raise ValueError(f"allowed_token_ids / stop_token_ids hold ids outside the vocabulary [0, {vocab})")
        blocked = torch.ones(vocab, dtype=torch.bool, device=device)
        blocked[allowed] = False
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)
    lengths = torch.zeros(bsz, dtype=torch.long, device=device)
    tokens = []
    for i in range(max_new_tokens):
        logits = lm_head(hidden).float()
        if blocked is not None:
            logits = logits.masked_fill(blocked, float("-inf"))
        token = torch.where(finished, pad_token_id, logits.argmax(dim=-1))
        fed_valid = ~finished
        tokens.append(token)
        lengths += fed_valid.long()
        finished = finished | torch.isin(token, stops)
        last = i == max_new_tokens - 1 or bool(finished.all())
        if last and not feed_last:
            break
        hidden = step(torch.where(fed_valid, token, 0), fed_valid)  # any embeddable id: nothing sees a pad
        if last:
            break
    return Greedy(torch.stack(tokens, dim=1), lengths)


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
    """Greedy continuation (B, n_new) of padded prompts (B, S).

    Vision features and DeepStack enter only at prefill; every decoded token sits one position past the
    previous one on all three MRoPE rows, starting right after the prompt's largest position. Rows that
    produced ``eos_token_id`` continue with ``pad_token_id``; decoding stops once every row has.
    """
    padding = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    cache = KVCache(len(model.layers))
    # Positions are computed here (not inside hidden_states) because decoding continues from them.
    position_ids, _ = model.position_ids(input_ids, attention_mask, image_grid_thw, video_grid_thw)
    position_ids = position_ids.to(input_ids.device)
    h = model.hidden_states(
        input_ids, attention_mask, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw,
        position_ids=position_ids, kv_cache=cache,
    )
    step = CachedStep(model, cache, padding, position_ids.amax(dim=(0, 2)) + 1)
    stops = () if eos_token_id is None else (eos_token_id,)
    return greedy_loop(model.lm_head, last_valid(h, padding), step, max_new_tokens, stop_token_ids=stops,
                       pad_token_id=pad_token_id).tokens


class CachedStep:
    """The KV-cached step: the new token alone runs through the layers against ``cache``.

    ``valid`` (B, S_cached) and ``next_position`` (B,) grow with every step and stay readable afterwards
    (the VLA builds its expert's cache from them); ``hidden`` collects each step's output (B, 1, D).
    """

    def __init__(self, model: Qwen3VLModel, cache: KVCache, valid: torch.Tensor, next_position: torch.Tensor):
        self.model, self.cache = model, cache
        self.valid, self.next_position = valid.bool(), next_position
        self.hidden: list[torch.Tensor] = []
        bsz = valid.shape[0]
        self._no_visual = torch.zeros(bsz, 1, dtype=torch.bool, device=valid.device)

    def __call__(self, token: torch.Tensor, fed_valid: torch.Tensor) -> torch.Tensor:
        model, bsz = self.model, token.shape[0]
        self.valid = torch.cat((self.valid, fed_valid[:, None]), dim=1)
        cos, sin = model.rotary(self.next_position.view(1, bsz, 1).expand(3, bsz, 1))
        h = model.run_layers(model.tok_embeddings(token[:, None]), cos, sin, causal_mask(self.valid, q_len=1),
                             self._no_visual, [], self.cache)
        self.next_position = self.next_position + fed_valid.long()
        self.hidden.append(h)
        return h[:, 0]
