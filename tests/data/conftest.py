"""Shared fixtures of the data tests: a debug tokenizer, tiny generated datasets and a config builder."""

from __future__ import annotations

import os

import pytest

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import write_cc12m_shards, write_lerobot_dataset, write_obelics_parquet
from torchtitan_vla.data.generate import synthetic_captions, synthetic_documents, synthetic_episodes
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer

CAMERAS = ("observation.images.main", "observation.images.wrist")


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return build_debug_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def episodes():
    """Three episodes of different lengths, two 32x32 cameras, 6-dim state, 4-dim action."""
    return synthetic_episodes(num_episodes=3, length=14, cameras=CAMERAS, size=32, seed=3, min_length=9)


@pytest.fixture(scope="session")
def lerobot_roots(tmp_path_factory, episodes):
    """The same episodes as v2.1 and as v3.0 (two mp4/parquet files), losslessly encoded."""
    root = tmp_path_factory.mktemp("lerobot")
    return {
        "v2.1": write_lerobot_dataset(str(root / "v21"), episodes, fps=10, version="v2.1", crf=0),
        "v3.0": write_lerobot_dataset(str(root / "v30"), episodes, fps=10, version="v3.0", crf=0,
                                      episodes_per_file=2),
    }


@pytest.fixture(scope="session")
def captions():
    return synthetic_captions(num_items=16, size=32, seed=1)


@pytest.fixture(scope="session")
def cc12m_root(tmp_path_factory, captions):
    root = str(tmp_path_factory.mktemp("cc12m"))
    write_cc12m_shards(root, captions, shard_size=4)
    return root


@pytest.fixture(scope="session")
def obelics_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("obelics"))
    docs = synthetic_documents(num_docs=12, size=32, seed=2)
    for f in range(4):
        write_obelics_parquet(os.path.join(root, f"obelics-{f:04d}.parquet"), docs[f::4])
    return root


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
