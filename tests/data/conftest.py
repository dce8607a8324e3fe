"""Shared fixtures of the data tests: a debug tokenizer and tiny generated datasets."""

from __future__ import annotations

import os

import pytest

from tests.data.helpers import CAMERAS
from torchtitan_vla.data import write_cc12m_shards, write_lerobot_dataset, write_obelics_parquet
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.tools.synthetic_data import synthetic_captions, synthetic_documents, synthetic_episodes


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
