"""Greedy text decoding by the VLA's VLM (pi0.5's subtask, pi0-FAST's action tokens), returning the cache
the Action Expert then samples against, so actions are conditioned on prompt + generated text without
running the VLM over it again.

The loop is the plain VLM's (``qwen3_vl.generate.greedy_loop``); what this module adds is the VLA's
prefix (``VLA.observe``: its masks, positions, state) and the expert's cache at the end. Generated tokens
are appended after the padded prompt columns; their MRoPE positions continue each row's text positions,
so the expert sees the same positions as in training, where the text follows the prompt directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...data.batch import Batch
from ..qwen3_vl.generate import CachedStep, greedy_loop, last_valid
from ..qwen3_vl.kv_cache import KVCache
from ..qwen3_vl.masks import causal_mask
from .inputs import Observation, PrefixCache


@dataclass
class Generated:
    ids: torch.Tensor
    """(B, T) long generated tokens, ``pad_token_id`` after each row's stop token."""
    lengths: torch.Tensor
    """(B,) long: generated tokens of each row, its stop token included."""
    cache: PrefixCache | None
    """The prefix cache (``VLA.sample_actions(prefix=...)``) over prompt + generated tokens; None without
    an Action Expert or after a FAST segment (generated tokens the expert never sees)."""


@torch.no_grad()
def greedy_decode(
    model,
    batch: Batch,
    max_new_tokens: int,
    *,
    allowed_token_ids: torch.Tensor | None = None,
    stop_token_ids: Sequence[int] = (),
    use_cache: bool = True,
    pad_token_id: int = 0,
) -> Generated:
    """Greedy continuation of each row's prompt (``batch``: a robot batch as sampling gets it).

    ``allowed_token_ids``: decoding is constrained to these ids (plus the stop ids). ``use_cache=False``
    recomputes the whole sequence at every step (the reference the cached path is checked against).
    """
    observation = model.observe(batch)
    # Generation continues the VLM's own sequence: every valid prompt token, a FAST segment it opens
    # included. ``Observation.valid`` is the expert's view, which leaves that segment out: decoding from
    # it would drop the "Action: " the VLM was trained to continue and reuse its positions.
    observation = dataclasses.replace(observation, valid=observation.text_valid,
                                      next_position=observation.text_next_position)
    vlm = model.vlm
    if use_cache:
        kv_cache = KVCache(len(vlm.layers))
        o = observation
        hidden = vlm.run_layers(o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack, kv_cache)
        step = CachedStep(vlm, kv_cache, o.valid, o.next_position)
    else:
        kv_cache, step = None, FullStep(model, observation)
        hidden = vlm.run_layers(*_layer_inputs(observation))
    greedy = greedy_loop(vlm.lm_head, last_valid(hidden, observation.valid), step, max_new_tokens,
                         allowed_token_ids=allowed_token_ids, stop_token_ids=stop_token_ids,
                         pad_token_id=pad_token_id, feed_last=True)
    cache = None
    # After an opened FAST segment the generated tokens are FAST actions, which the expert never reads
    # (pi0-FAST samples no flow): no expert cache then.
    opens_fast = batch.fast_mask is not None and bool(batch.fast_mask.any())
    if model.expert is not None and not opens_fast:
        if use_cache:
            extended = dataclasses.replace(observation, valid=step.valid, next_position=step.next_position)
            cache = _prefix_cache(model, extended, kv_cache, torch.cat([hidden, *step.hidden], dim=1))
        else:
            cache = model.encode_prefix(step.observation)
    return Generated(greedy.tokens, greedy.lengths, cache)


def _prefix_cache(model, extended: Observation, kv_cache: KVCache, hidden: torch.Tensor) -> PrefixCache:
    """``VLA.encode_prefix`` of the extended sequence from what decoding already computed."""
    if model.expert_cfg.fusion == "late":
        return PrefixCache(extended.valid, extended.state,
                           context_kv=model.expert.encode_context(hidden, extended.valid))
    return PrefixCache(extended.valid, extended.state, kv_cache=kv_cache,
                       expert_inputs=model._expert_inputs(extended, None, False))


def _layer_inputs(o: Observation) -> tuple:
    return o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack


class FullStep:
    """The uncached step: the observation grows by the new token and every layer runs over all of it."""

    def __init__(self, model, observation: Observation):
        self.model, self.observation = model, observation

    def __call__(self, token: torch.Tensor, fed_valid: torch.Tensor) -> torch.Tensor:
        o, vlm, bsz = self.observation, self.model.vlm, token.shape[0]
        cos, sin = vlm.rotary(o.next_position.view(1, bsz, 1).expand(3, bsz, 1))
        valid = torch.cat((o.valid, fed_valid[:, None]), dim=1)
        # The prompt keeps its own mask (causal or prefix-LM); generated tokens are causal over everything.
        mask = F.pad(o.mask, (0, 1, 0, 1), value=False) | causal_mask(valid)
        self.observation = dataclasses.replace(
            o,
            h=torch.cat((o.h, vlm.tok_embeddings(token[:, None])), dim=1),
            visual_mask=F.pad(o.visual_mask, (0, 1), value=False),
            cos=torch.cat((o.cos, cos), dim=1), sin=torch.cat((o.sin, sin), dim=1),
            mask=mask, valid=valid, next_position=o.next_position + fed_valid.long(),
            text_valid=valid, text_next_position=o.next_position + fed_valid.long(),
        )
        return vlm.run_layers(*_layer_inputs(self.observation))[:, -1]
