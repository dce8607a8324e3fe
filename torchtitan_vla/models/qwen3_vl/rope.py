"""Rotary embeddings: interleaved multimodal RoPE (decoder) and 2-D RoPE (vision encoder)."""

from __future__ import annotations

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1 | x2] -> [-x2 | x1]``: dimension i rotates together with dimension i + d/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` by angles whose cos/sin broadcast against it (computed in cos's dtype)."""
    return x * cos + rotate_half(x) * sin


def inverse_frequencies(dim: int, theta: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``theta^(-2k/dim)`` for k < dim/2, in fp32."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


def interleave_index(mrope_section: tuple[int, int, int]) -> torch.Tensor:
    """Which position row (0=T, 1=H, 2=W) drives each frequency in Qwen3-VL's interleaved layout.

    H and W take every third slot from offsets 1 and 2 (``section[1]`` / ``section[2]`` slots); T keeps
    the rest, including the tail beyond ``3 * section[1]``.
    """
    n = sum(mrope_section)
    axis = torch.zeros(n, dtype=torch.long)
    for row in (1, 2):
        axis[torch.arange(row, 3 * mrope_section[row], 3)] = row
    return axis


class MRoPE(nn.Module):
    """cos/sin of the decoder's interleaved MRoPE for (3, B, S) position ids (T, H, W rows)."""

    def __init__(self, head_dim: int, theta: float, mrope_section: tuple[int, int, int]):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.mrope_section = tuple(mrope_section)
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, theta), persistent=False)
        self.register_buffer("axis", interleave_index(self.mrope_section), persistent=False)

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        """Recompute the buffers (after meta-device construction they hold garbage)."""
        self.inv_freq = inverse_frequencies(self.head_dim, self.theta, device=device)
        self.axis = interleave_index(self.mrope_section).to(device)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (3, B, S) or (B, S) -> cos, sin (B, S, head_dim) in fp32."""
        if position_ids.dim() == 2:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        with torch.autocast(device_type=position_ids.device.type, enabled=False):
            # Select per frequency the position row that drives it, then multiply: identical to
            # computing all three angle sets and interleaving them.
            pos = position_ids.to(self.inv_freq.device).float()  # (3, B, S)
            pos = pos.permute(1, 2, 0)[..., self.axis]  # (B, S, head_dim/2)
            angles = pos * self.inv_freq
            emb = torch.cat((angles, angles), dim=-1)
            return emb.cos(), emb.sin()


class VisionRoPE(nn.Module):
    """2-D RoPE of the ViT: the first half of each head's rotated dims follows the patch row, the second
    the column; coordinates are per frame, listed in merge-block order."""

    def __init__(self, head_dim: int, theta: float, spatial_merge_size: int):
        super().__init__()
        self.head_dim = head_dim
        self.theta = theta
        self.merge = spatial_merge_size
        self.register_buffer("inv_freq", inverse_frequencies(head_dim // 2, theta), persistent=False)

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        self.inv_freq = inverse_frequencies(self.head_dim // 2, self.theta, device=device)

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (h*w, head_dim) fp32 for one frame of h x w patches (merge-block order)."""
        rows, cols = merge_block_coordinates(h, w, self.merge, self.inv_freq.device)
        angles = torch.cat((rows[:, None] * self.inv_freq, cols[:, None] * self.inv_freq), dim=-1)
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos(), emb.sin()


def merge_block_coordinates(h: int, w: int, merge: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of every patch of an h x w frame, enumerated block by block (each block merge x merge)."""
    r = torch.arange(h, device=device).view(h // merge, 1, merge, 1).expand(-1, w // merge, -1, merge)
    c = torch.arange(w, device=device).view(1, w // merge, 1, merge).expand(h // merge, -1, merge, -1)
    return r.reshape(-1).float(), c.reshape(-1).float()
