"""State/action normalization (openpi conventions), padding to the model's width, state discretisation."""

from __future__ import annotations

import json
import os

import numpy as np

EPS = 1e-6
TRANSFORM_KEY = "__action_transform__"
"""Entry of a stats JSON from scripts/compute_norm_stats.py: the ActionTransform its statistics are of."""


class Normalizer:
    """Normalizes one feature with mean/std (z-score) or q01/q99 (to [-1, 1]) and inverts it."""

    def __init__(self, mode: str, stats: dict[str, np.ndarray] | None, name: str):
        needed = {"mean_std": ("mean", "std"), "quantile": ("q01", "q99"), "none": ()}[mode]
        missing = [k for k in needed if stats is None or k not in stats]
        if missing:
            hint = " (run scripts/compute_norm_stats.py and set the source's stats_path)" if mode == "quantile" else ""
            raise ValueError(f"stats of '{name}' lack {missing} needed by normalization '{mode}'{hint}")
        self.mode = mode
        if mode == "mean_std":
            self.shift, self.scale = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32) + EPS
        elif mode == "quantile":
            q01, q99 = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
            self.shift, self.scale = (q01 + q99) / 2, (q99 - q01 + EPS) / 2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "none":
            return np.asarray(x, np.float32)
        return ((x - self.shift) / self.scale).astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.mode == "none":
            return np.asarray(y, np.float32)
        return (y * self.scale + self.shift).astype(np.float32)


def load_stats_file(path: str) -> dict[str, dict[str, np.ndarray]]:
    """Read a stats JSON (``{feature: {mean, std, q01, q99, ...}}``, LeRobot's stats.json format)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"stats file not found: {path}")
    with open(path) as f:
        raw = json.load(f)
    out = {key: {k: np.asarray(v, np.float64) for k, v in s.items()} for key, s in raw.items() if key != TRANSFORM_KEY}
    if TRANSFORM_KEY in raw:
        out[TRANSFORM_KEY] = raw[TRANSFORM_KEY]
    return out


def pad_last(x: np.ndarray, width: int, name: str) -> np.ndarray:
    """Zero-pad the last axis of ``x`` to ``width`` (an error names ``name`` when it is wider)."""
    if x.shape[-1] > width:
        raise ValueError(f"{name} has {x.shape[-1]} dims, more than the configured maximum {width}")
    pad = [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])]
    return np.pad(x, pad)


def discretize_state(state: np.ndarray, bins: int) -> np.ndarray:
    """pi0.5: bin index of each (normalized, clipped to [-1, 1]) state dimension among ``bins`` bins."""
    edges = np.linspace(-1.0, 1.0, bins + 1)[:-1]
    return np.digitize(np.clip(state, -1.0, 1.0), edges) - 1
