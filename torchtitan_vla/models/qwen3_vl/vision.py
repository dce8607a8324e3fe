"""Qwen3-VL vision encoder: patch embedding, interpolated learned positions, 2-D RoPE ViT blocks that
attend within each frame, the 2x2 patch merger and the DeepStack mergers.

Patches arrive in merge-block order (every ``merge**2`` consecutive rows form one LLM token), and every
per-patch quantity computed here (positions, RoPE angles) follows the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .args import VisionArgs
from .attention import attend
from .decoder import INIT_STD
from .rope import VisionRoPE, apply_rotary, merge_block_coordinates

LAYER_NORM_EPS = 1e-6


@dataclass
class FrameGroup:
    """Frames that share one size, attended to in one batched call."""

    index: torch.Tensor | None
    """Row indices of the group's patches in the packed sequence (None: the whole sequence, in order)."""

    n_frames: int
    """Number of frames in the group."""

    frame_len: int
    """Patches per frame."""


def frame_groups(grid: list[list[int]], device) -> list[FrameGroup]:
    """Group the frames of all images/videos by patch count (attention never crosses frames)."""
    by_len: dict[int, list[tuple[int, int]]] = {}
    start = 0
    for t, h, w in grid:
        by_len.setdefault(h * w, []).append((start, t))
        start += t * h * w
    if len(by_len) == 1:
        (frame_len, items), = by_len.items()
        return [FrameGroup(None, sum(t for _, t in items), frame_len)]
    groups = []
    for frame_len, items in by_len.items():
        index = torch.cat([torch.arange(s, s + t * frame_len, device=device) for s, t in items])
        groups.append(FrameGroup(index, sum(t for _, t in items), frame_len))
    return groups


class VisionAttention(nn.Module):
    """Bidirectional attention within each frame: SDPA over frames batched by size (exact, no mask).

    The released checkpoints fuse q, k and v into one ``qkv`` tensor; here they are three projections
    (the state-dict adapter splits and re-fuses them), so that tensor parallelism can split each by
    heads with contiguous shards. The head count is read from the projection's output width, which is
    the local one under tensor parallelism."""

    def __init__(self, args: VisionArgs):
        super().__init__()
        self.head_dim = args.dim // args.n_heads
        self.q_proj = nn.Linear(args.dim, args.dim, bias=True)
        self.k_proj = nn.Linear(args.dim, args.dim, bias=True)
        self.v_proj = nn.Linear(args.dim, args.dim, bias=True)
        self.proj = nn.Linear(args.dim, args.dim, bias=True)

    def forward(self, x, cos, sin, groups: list[FrameGroup]) -> torch.Tensor:
        q, k, v = (rearrange(p(x), "n (h d) -> n h d", d=self.head_dim) for p in (self.q_proj, self.k_proj, self.v_proj))
        # The rotation runs in fp32, then goes back to the activation dtype (reference numerics).
        q = apply_rotary(q.float(), cos[:, None], sin[:, None]).to(x.dtype)
        k = apply_rotary(k.float(), cos[:, None], sin[:, None]).to(x.dtype)
        out = torch.empty_like(q)
        for g in groups:
            qg, kg, vg = (t if g.index is None else t[g.index] for t in (q, k, v))
            frames = (rearrange(t, "(f s) h d -> f h s d", f=g.n_frames) for t in (qg, kg, vg))
            og = rearrange(attend(*frames, None), "f h s d -> (f s) h d")
            if g.index is None:
                out = og
            else:
                out[g.index] = og
        return self.proj(rearrange(out, "n h d -> n (h d)"))


class VisionMLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(dim, hidden_dim, bias=True)
        self.linear_fc2 = nn.Linear(hidden_dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(x), approximate="tanh"))


class VisionBlock(nn.Module):
    def __init__(self, args: VisionArgs):
        super().__init__()
        self.norm1 = nn.LayerNorm(args.dim, eps=LAYER_NORM_EPS)
        self.attn = VisionAttention(args)
        self.norm2 = nn.LayerNorm(args.dim, eps=LAYER_NORM_EPS)
        self.mlp = VisionMLP(args.dim, args.intermediate_size)

    def forward(self, x, cos, sin, groups: list[FrameGroup]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, groups)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """Concatenate each 2x2 block of patches and project to the decoder width.

    The main merger normalises each patch before the concatenation; the DeepStack mergers normalise the
    concatenated 4C vector (``postshuffle_norm``).
    """

    def __init__(self, dim: int, out_dim: int, merge: int, postshuffle_norm: bool):
        super().__init__()
        self.merged_dim = dim * merge**2
        self.postshuffle_norm = postshuffle_norm
        self.norm = nn.LayerNorm(self.merged_dim if postshuffle_norm else dim, eps=LAYER_NORM_EPS)
        self.linear_fc1 = nn.Linear(self.merged_dim, self.merged_dim, bias=True)
        self.linear_fc2 = nn.Linear(self.merged_dim, out_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.postshuffle_norm:
            x = self.norm(x.view(-1, self.merged_dim))
        else:
            x = self.norm(x).view(-1, self.merged_dim)
        return self.linear_fc2(F.gelu(self.linear_fc1(x)))


class VisionEncoder(nn.Module):
    """pixel patches (N, 1536) + grid_thw -> merged tokens (N/4, D) and DeepStack features [(N/4, D)]."""

    def __init__(self, args: VisionArgs, out_dim: int):
        super().__init__()
        self.args = args
        self.merge = args.spatial_merge_size
        self.grid_side = math.isqrt(args.num_position_embeddings)
        if self.grid_side**2 != args.num_position_embeddings:
            raise ValueError(f"num_position_embeddings={args.num_position_embeddings} is not a square")
        # Conv3d with stride == kernel is a Linear over the flattened (channel, t, y, x) patch.
        self.patch_embed = nn.Linear(args.patch_dim, args.dim, bias=True)
        self.pos_embed = nn.Embedding(args.num_position_embeddings, args.dim)
        self.rotary = VisionRoPE(args.dim // args.n_heads, args.rope_theta, args.spatial_merge_size)
        self.blocks = nn.ModuleList(VisionBlock(args) for _ in range(args.depth))
        self.merger = PatchMerger(args.dim, out_dim, self.merge, postshuffle_norm=False)
        self.deepstack_mergers = nn.ModuleList(
            PatchMerger(args.dim, out_dim, self.merge, postshuffle_norm=True) for _ in args.deepstack_visual_indexes
        )
        self.deepstack_level = {block: level for level, block in enumerate(args.deepstack_visual_indexes)}

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embed.weight.dtype

    def interpolated_positions(self, h: int, w: int) -> torch.Tensor:
        """Bilinear (align_corners) lookup of the learned table for an h x w frame, merge-block order.

        A 4-tap gather with fp32 weights, summed in fp32 and cast to the table's dtype.
        """
        side, dev = self.grid_side, self.pos_embed.weight.device

        def taps(n: int):
            src = torch.arange(n, dtype=torch.float32, device=dev) * (side - 1) / max(n - 1, 1)
            lo = src.floor().long()
            return lo, (lo + 1).clamp(max=side - 1), src - lo

        r0, r1, dr = taps(h)
        c0, c1, dc = taps(w)
        rows, cols = (t.long() for t in merge_block_coordinates(h, w, self.merge, dev))
        r0, r1, dr, c0, c1, dc = r0[rows], r1[rows], dr[rows], c0[cols], c1[cols], dc[cols]
        # Looked up through the module (not by indexing its weight), so a parallelized table works too.
        lookup = self.pos_embed
        pe = (
            lookup(r0 * side + c0) * ((1 - dr) * (1 - dc))[:, None]
            + lookup(r0 * side + c1) * ((1 - dr) * dc)[:, None]
            + lookup(r1 * side + c0) * (dr * (1 - dc))[:, None]
            + lookup(r1 * side + c1) * (dr * dc)[:, None]
        )
        return pe.to(self.pos_embed.weight.dtype)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        grid = grid_thw.tolist()
        n_patches = sum(t * h * w for t, h, w in grid)
        if pixel_values.shape != (n_patches, self.args.patch_dim):
            raise ValueError(
                f"pixel values have shape {tuple(pixel_values.shape)} but grid_thw {grid} needs "
                f"({n_patches}, {self.args.patch_dim})"
            )
        bad = [g for g in grid if g[1] % self.merge or g[2] % self.merge]
        if bad:
            raise ValueError(f"grid_thw rows {bad} have h or w not divisible by spatial_merge_size={self.merge}")
        x = self.patch_embed(pixel_values.to(self.dtype))
        pos, cos, sin = [], [], []
        for t, h, w in grid:
            pe = self.interpolated_positions(h, w)
            c, s = self.rotary(h, w)
            pos.append(pe.repeat(t, 1))
            cos.append(c.repeat(t, 1))
            sin.append(s.repeat(t, 1))
        x = x + torch.cat(pos)
        cos, sin = torch.cat(cos), torch.cat(sin)
        groups = frame_groups(grid, x.device)
        deepstack: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, groups)
            if i in self.deepstack_level:
                deepstack.append(self.deepstack_mergers[self.deepstack_level[i]](x))
        return self.merger(x), deepstack

    def init_weights(self, buffer_device=None, std: float = INIT_STD) -> None:
        self.rotary.reset_buffers(buffer_device)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.pos_embed.weight, std=std)
