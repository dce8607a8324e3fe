"""A growing key/value cache for incremental decoding (one entry per attention layer)."""

from __future__ import annotations

import torch


class KVCache:
    """Keys/values of every layer, (B, KV, S_cached, head_dim), appended to as decoding proceeds."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def update(self, layer_id: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v to layer ``layer_id`` and return everything cached for it."""
        if self.keys[layer_id] is not None:
            k = torch.cat((self.keys[layer_id], k), dim=2)
            v = torch.cat((self.values[layer_id], v), dim=2)
        self.keys[layer_id], self.values[layer_id] = k, v
        return k, v
