"""Helpers of the data tests: the cameras of the generated datasets and a small job config builder."""

from __future__ import annotations

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.data import DataSource

CAMERAS = ("observation.images.main", "observation.images.wrist")


def make_config(sources: list[DataSource], mixture: dict[str, float] | None = None, **data) -> JobConfig:
    """A small job config: 32x32 robot images, H=5, batch 4, max_seq_len 128, no workers."""
    cfg = JobConfig()
    cfg.data.sources = sources
    cfg.data.mixture = mixture or {}
    cfg.data.image_size = 32
    cfg.data.image_min_pixels = 32 * 32
    cfg.data.image_max_pixels = 32 * 32
    cfg.data.max_seq_len = 128
    cfg.data.num_workers = 0
    for key, value in data.items():
        setattr(cfg.data, key, value)
    cfg.action_expert.action_horizon = 5
    cfg.action_expert.max_action_dim = 8
    cfg.action_expert.max_state_dim = 8
    cfg.training.local_batch_size = 4
    return cfg
