"""Qwen3-VL: vision encoder + Qwen3 decoder with interleaved MRoPE and DeepStack injection.

    input_ids ──tok_embeddings──┐
    pixels ──vision_encoder──► merged tokens scattered into the placeholder slots ──► h
                             └─► DeepStack features [level 0..k-1] (visual positions)
    h ──layer 0──(+deepstack[0])──layer 1──(+deepstack[1])── ... ──layer L-1──norm──lm_head──► logits
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .args import Qwen3VLArgs
from .decoder import INIT_STD, DecoderLayer, RMSNorm
from .kv_cache import KVCache
from .masks import causal_mask
from .rope import MRoPE
from .rope_index import get_rope_index
from .vision import VisionEncoder


class Qwen3VLModel(nn.Module):
    def __init__(self, args: Qwen3VLArgs, attention_backend: str = "sdpa"):
        super().__init__()
        self.args = args
        t = args.text
        self.vision_encoder = VisionEncoder(args.vision, out_dim=t.dim)
        self.tok_embeddings = nn.Embedding(t.vocab_size, t.dim)
        self.rope = MRoPE(t.head_dim, t.rope_theta, t.mrope_section)
        self.layers = nn.ModuleList(DecoderLayer(t, i, attention_backend) for i in range(t.n_layers))
        self.norm = RMSNorm(t.dim, t.rms_norm_eps)
        self.lm_head = nn.Linear(t.dim, t.vocab_size, bias=False)
        self.tie_weights()
        self.skip_idle_vision = True
        """Skip the vision encoder when a batch has no image or video. Data-parallel training must set this
        False: FSDP gathers the encoder's parameters only on ranks that run it, so ranks whose
        micro-batch has no pixels (text-only documents) run it on a dummy frame whose output is added
        times zero instead."""

    def tie_weights(self) -> None:
        """Share the embedding with the LM head when the flavor ties them (``to_empty`` unties them)."""
        if self.args.text.tie_word_embeddings:
            self.lm_head.weight = self.tok_embeddings.weight

    def reset_buffers(self, buffer_device: torch.device | str | None = None) -> None:
        """Recompute the RoPE buffers (non-persistent, so neither checkpoints nor ``to_empty`` restore them)."""
        self.rope.reset_buffers(buffer_device)
        self.vision_encoder.rotary.reset_buffers(buffer_device)

    @torch.no_grad()
    def init_weights(self, buffer_device: torch.device | str | None = None) -> None:
        """Fresh random weights (call after ``to_empty`` when building on the meta device)."""
        self.tie_weights()
        self.reset_buffers(buffer_device)
        self.vision_encoder.init_weights(buffer_device)
        nn.init.normal_(self.tok_embeddings.weight, std=INIT_STD)
        for layer in self.layers:
            layer.init_weights()
        self.norm.init_weights()
        if not self.args.text.tie_word_embeddings:
            nn.init.trunc_normal_(self.lm_head.weight, std=self.args.text.dim**-0.5)

    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Token embeddings with vision features in the placeholder slots.

        Returns h (B, S, D), visual_mask (B, S) bool (image or video placeholder), and the DeepStack
        features: one (n_visual, D) tensor per level, rows in sequence order of the visual positions.
        Images and videos go through the vision encoder in one call (it attends within each frame, so
        batching them changes nothing), so every forward runs the encoder at most once.
        """
        h = self.tok_embeddings(input_ids)
        masks, pixels, grids, counts = [], [], [], []
        for name, token_id, values, grid in (
            ("image", self.args.image_token_id, pixel_values, image_grid_thw),
            ("video", self.args.video_token_id, pixel_values_videos, video_grid_thw),
        ):
            slots = input_ids == token_id
            n_slots = int(slots.sum())
            if values is None:
                if n_slots:
                    raise ValueError(f"the prompt has {n_slots} {name} placeholder tokens but no {name} pixels")
                continue
            if grid is None:
                raise ValueError(f"{name} pixel values were given without their grid_thw")
            n_features = int(grid.prod(dim=-1).sum()) // self.args.vision.spatial_merge_size**2
            if n_features != n_slots:
                raise ValueError(
                    f"the prompt has {n_slots} {name} placeholder tokens (id {token_id}) but the {name}s give "
                    f"{n_features} features (grid_thw {grid.tolist()}: t*h*w/4 each)"
                )
            masks.append(slots)
            pixels.append(values)
            grids.append(grid)
            counts.append(n_features)
        visual_mask = torch.zeros_like(input_ids, dtype=torch.bool)
        if not pixels:
            return (h if self.skip_idle_vision else h + self._idle_vision(h)), visual_mask, []
        features, deepstack = self.vision_encoder(torch.cat(pixels), torch.cat(grids))
        deepstacks: list[list[torch.Tensor]] = [[] for _ in masks]  # per modality, per level
        for level in deepstack:
            for rows, modality in zip(level.split(counts), deepstacks):
                modality.append(rows)
        for slots, rows in zip(masks, features.split(counts)):
            h = h.masked_scatter(slots.unsqueeze(-1), rows.to(h.dtype))
            visual_mask |= slots
        return h, visual_mask, self._merge_deepstack(visual_mask, masks, deepstacks, h.dtype)

    def _idle_vision(self, h: torch.Tensor) -> torch.Tensor:
        """Zero, computed through the vision encoder on one minimal dummy frame: added to ``h``, it
        changes nothing, and the encoder's parameters get exact zero gradients (see ``skip_idle_vision``)."""
        merge = self.args.vision.spatial_merge_size
        grid = torch.tensor([[1, merge, merge]], device=h.device)
        dummy = torch.zeros(merge * merge, self.args.vision.patch_dim, device=h.device)
        features, deepstack = self.vision_encoder(dummy, grid)
        total = features.sum() + sum(level.sum() for level in deepstack)
        return total.to(h.dtype) * 0.0

    @staticmethod
    def _merge_deepstack(visual_mask, masks, deepstacks, dtype) -> list[torch.Tensor]:
        """Interleave image and video DeepStack rows into the sequence order of the visual positions."""
        if len(masks) == 1:
            return [f.to(dtype) for f in deepstacks[0]]
        merged = []
        for level_feats in zip(*deepstacks):
            out = level_feats[0].new_zeros(int(visual_mask.sum()), level_feats[0].shape[-1], dtype=dtype)
            for slots, feats in zip(masks, level_feats):
                out[slots[visual_mask]] = feats.to(dtype)
            merged.append(out)
        return merged

    def rotary(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (3, B, S) -> cos, sin (B, S, head_dim), fp32."""
        return self.rope(position_ids)

    @staticmethod
    def add_deepstack(
        h: torch.Tensor, layer_index: int, visual_mask: torch.Tensor, deepstack: list[torch.Tensor]
    ) -> torch.Tensor:
        """After decoder layer ``layer_index``, add DeepStack level ``layer_index`` at the visual positions."""
        if layer_index >= len(deepstack):
            return h
        return h.index_put((visual_mask,), deepstack[layer_index].to(h.dtype), accumulate=True)

    def position_ids(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``get_rope_index`` with this model's token ids: (position_ids (3, B, S), rope_deltas (B, 1))."""
        return get_rope_index(
            input_ids.cpu(),
            None if image_grid_thw is None else image_grid_thw.cpu(),
            None if video_grid_thw is None else video_grid_thw.cpu(),
            None if attention_mask is None else attention_mask.cpu(),
            image_token_id=self.args.image_token_id,
            video_token_id=self.args.video_token_id,
            spatial_merge_size=self.args.vision.spatial_merge_size,
            doc_ids=None if doc_ids is None else doc_ids.cpu(),
        )

    def run_layers(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        visual_mask: torch.Tensor,
        deepstack: list[torch.Tensor],
        kv_cache: KVCache | None = None,
        run_layer: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """All decoder layers with DeepStack injection, then the final norm. mask=None: plain causal.

        ``run_layer(layer, h) -> h`` replaces the plain ``layer(h, cos, sin, mask, kv_cache)`` call: the VLA's
        joint fusion advances its expert tokens through each joint layer there, on this same loop.
        """
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, kv_cache) if run_layer is None else run_layer(layer, h)
            h = self.add_deepstack(h, i, visual_mask, deepstack)
        return self.norm(h)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states (B, S, D). ``attention_mask`` is the 0/1 padding mask; positions default
        to ``get_rope_index`` over the non-padding tokens (restarting per ``doc_ids`` document)."""
        h, visual_mask, deepstack = self.embed_multimodal(
            input_ids, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw
        )
        if position_ids is None:
            position_ids, _ = self.position_ids(input_ids, attention_mask, image_grid_thw, video_grid_thw, doc_ids)
        cos, sin = self.rotary(position_ids.to(h.device))
        mask = None
        if attention_mask is not None or doc_ids is not None:
            mask = causal_mask(attention_mask, doc_ids, device=h.device)
        return self.run_layers(h, cos, sin, mask, visual_mask, deepstack, kv_cache)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """Logits (B, S, vocab): the LM head over ``hidden_states`` (same arguments: ``input_ids``,
        ``attention_mask``, ``pixel_values``, ``image_grid_thw``, ``pixel_values_videos``, ``video_grid_thw``,
        ``position_ids``, ``doc_ids``, ``kv_cache``)."""
        return self.lm_head(self.hidden_states(*args, **kwargs))
