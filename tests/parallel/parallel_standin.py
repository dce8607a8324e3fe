"""A tiny three-component transformer with the VLA's parallel interface, for unit tests of the
generic helpers (AC, FSDP plans, clipping) that must not depend on the real model's details."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).unsqueeze(1).chunk(3, dim=-1)
        x = x + self.out(F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1))
        return x + self.mlp(x)


class Tower(nn.Module):
    def __init__(self, dim: int, depth: int, in_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    def __init__(self, vocab: int, dim: int, depth: int, tied: bool):
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(Block(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        if tied:
            self.lm_head.weight = self.tok_embeddings.weight


class StandIn(nn.Module):
    """vision tower -> prefix of the decoder's sequence; expert tower reads the decoder's output."""

    def __init__(self, vocab: int = 64, dim: int = 32, depth: int = 2, tied: bool = True):
        super().__init__()
        self.vision = Tower(dim, depth, in_dim=12)
        self.decoder = Decoder(vocab, dim, depth, tied)
        self.expert = Tower(dim, depth, in_dim=dim)
        self.action_out = nn.Linear(dim, 4)

    def components(self) -> dict[str, nn.Module]:
        return {"vision": self.vision, "decoder": self.decoder, "expert": self.expert}

    def blocks(self, component: str) -> list[nn.Module]:
        return list(self.components()[component].blocks if component != "decoder" else self.decoder.layers)

    def forward(self, batch: dict) -> torch.Tensor:
        """Mean text cross-entropy plus mean squared action error (a scalar to backpropagate)."""
        vis = self.vision(batch["pixels"])
        h = torch.cat([vis, self.decoder.tok_embeddings(batch["input_ids"])], dim=1)
        for layer in self.decoder.layers:
            h = layer(h)
        h = self.decoder.norm(h)
        logits = self.decoder.lm_head(h[:, vis.shape[1] :])
        text = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        actions = self.action_out(self.expert(h))[:, -batch["actions"].shape[1] :]
        return text + ((actions - batch["actions"]) ** 2).mean()


def standin_batch(batch_size: int, seed: int, seq: int = 6, vocab: int = 64) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, vocab, (batch_size, seq), generator=g)
    labels[:, -2:] = -100
    return {
        "pixels": torch.randn(batch_size, 3, 12, generator=g),
        "input_ids": torch.randint(0, vocab, (batch_size, seq), generator=g),
        "labels": labels,
        "actions": torch.randn(batch_size, 3, 4, generator=g),
    }
