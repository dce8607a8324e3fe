"""Mixture weights, rank disjointness, exact resume with workers, and the Batch contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import Batch, build_dataloader
from torchtitan_vla.data.mixture import MixtureDataset, SourceStream
from torchtitan_vla.data.sample import Sample


class CountingStream(SourceStream):
    """A source whose n-th sample carries n: no I/O, so thousands of draws are cheap."""

    def __init__(self, source_id: int, stream_id: int, num_streams: int):
        self.source_id, self.position, self.skipped = source_id, stream_id, 0
        self.step = num_streams

    def next(self, rng):
        self.position += self.step
        ids = torch.tensor([self.position])
        return Sample(ids, ids, torch.zeros(3, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long), self.source_id)

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def test_mixture_proportions_follow_the_weights():
    weights = {"robot": 0.8, "web": 0.15, "text": 0.05}
    dataset = MixtureDataset(list(weights), [CountingStream] * 3, list(weights.values()), seed=0, dp_rank=0,
                             dp_world_size=1)
    stream = iter(dataset)
    counts = np.bincount([next(stream).source_id for _ in range(2000)], minlength=3)
    for count, p in zip(counts, weights.values()):
        sigma = np.sqrt(2000 * p * (1 - p))
        assert abs(count - 2000 * p) < 4 * sigma, (counts, weights)


def test_mixture_is_deterministic_for_a_seed():
    def draws(seed):
        stream = iter(MixtureDataset(["a", "b"], [CountingStream] * 2, [0.5, 0.5], seed, 0, 1))
        return [next(stream).source_id for _ in range(50)]

    assert draws(1) == draws(1) and draws(1) != draws(2)


def _sources(lerobot_roots, cc12m_root, obelics_root):
    return [
        DataSource(name="robot", kind="lerobot", path=lerobot_roots["v3.0"]),
        DataSource(name="cc12m", kind="cc12m", path=cc12m_root),
        DataSource(name="obelics", kind="obelics", path=obelics_root),
    ]


def _keys(batch):
    """A hashable identity per row: the robot state for robot rows, the token ids for web rows."""
    keys = []
    for row in range(len(batch.source_id)):
        if batch.has_actions[row]:
            keys.append(("robot", batch.state[row].numpy().tobytes()))
        else:
            ids = batch.input_ids[row][batch.attention_mask[row]]
            keys.append(("web", tuple(ids.tolist())))
    return keys


def test_batch_contract(lerobot_roots, cc12m_root, obelics_root, tokenizer):
    cfg = make_config(_sources(lerobot_roots, cc12m_root, obelics_root))
    loader = build_dataloader(cfg, tokenizer, 0, 1)
    assert loader.source_names == ["robot", "cc12m", "obelics"]
    batch = next(iter(loader))
    assert isinstance(batch, Batch)
    b, s, h = 4, 128, 5
    shapes = {"input_ids": (b, s), "labels": (b, s), "attention_mask": (b, s), "position_ids": (3, b, s),
              "doc_ids": (b, s), "state": (b, 8), "actions": (b, h, 8), "action_is_pad": (b, h),
              "action_dim_mask": (b, 8), "has_actions": (b,), "source_id": (b,), "skipped": (3,)}
    for key, shape in shapes.items():
        assert tuple(getattr(batch, key).shape) == shape, key
    assert batch.pixel_values.shape[1] == 1536 and batch.image_grid_thw.shape[1] == 3
    assert int(batch.image_grid_thw.prod(1).sum()) == batch.pixel_values.shape[0]
    assert int((batch.input_ids == tokenizer.image_pad_id).sum()) == int(batch.image_grid_thw.prod(1).sum()) // 4
    assert batch.has_actions.tolist() == (batch.source_id == 0).tolist()
    assert (batch.action_dim_mask.sum(1) == torch.where(batch.has_actions, 4, 0)).all()


def test_ranks_see_disjoint_streams(lerobot_roots, cc12m_root, obelics_root, tokenizer):
    """Within an epoch the ranks partition every source (robot frames, web shards)."""
    seen = []
    for rank in range(2):
        cfg = make_config(_sources(lerobot_roots, cc12m_root, obelics_root), packing=False)
        loader = build_dataloader(cfg, tokenizer, rank, 2)
        keys = set()
        for i, batch in enumerate(loader):
            keys.update(_keys(batch))
            if i == 1:  # 8 samples: inside each rank's first epoch of every source
                break
        seen.append(keys)
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_resume_mid_epoch_with_workers_continues_exactly(lerobot_roots, cc12m_root, obelics_root, tokenizer):
    cfg = make_config(_sources(lerobot_roots, cc12m_root, obelics_root), num_workers=2)
    loader = build_dataloader(cfg, tokenizer, 0, 1)
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    expected = [next(it) for _ in range(4)]
    resumed = build_dataloader(cfg, tokenizer, 0, 1)
    resumed.load_state_dict(state)
    it = iter(resumed)
    for want in expected:
        got = next(it)
        for key, value in vars(want).items():
            if value is None:
                assert getattr(got, key) is None, key
            else:
                assert torch.equal(getattr(got, key), value), key
    assert resumed.samples_per_source == loader.samples_per_source


def test_too_small_robot_source_fails_at_build_time_counting_the_workers(lerobot_roots, episodes, tokenizer):
    """Every loader worker takes its own share of the frames; a dataset too small to give each one a frame
    is named when the loader is built, not later inside a worker process."""
    frames = sum(len(e["action"]) for e in episodes)
    sources = [DataSource(name="robot", kind="lerobot", path=lerobot_roots["v3.0"])]
    build_dataloader(make_config(sources, num_workers=frames), tokenizer, 0, 1)  # one frame per stream: fine
    with pytest.raises(ValueError, match=f"{frames} frames, fewer than the {frames + 1} data-loading streams"):
        build_dataloader(make_config(sources, num_workers=frames + 1), tokenizer, 0, 1)
