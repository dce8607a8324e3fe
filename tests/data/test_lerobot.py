"""LeRobot v2.1 / v3.0: what the writers write reads back; chunks, padding, normalization, bad data."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from tests.data.helpers import CAMERAS, make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import LeRobotReader, build_dataloader, write_lerobot_dataset
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.robot import RobotSampleBuilder
from torchtitan_vla.tools.synthetic_data import synthetic_episodes


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_reads_back_what_was_written(lerobot_roots, episodes, version):
    reader = LeRobotReader(lerobot_roots[version])
    assert reader.camera_keys == list(CAMERAS)
    assert [ep.length for ep in reader.episodes] == [len(ep["state"]) for ep in episodes]
    for ep, written in zip(reader.episodes, episodes):
        assert ep.task == written["task"]
        np.testing.assert_array_equal(reader.state[ep.start:ep.start + ep.length], written["state"])
        np.testing.assert_array_equal(reader.action[ep.start:ep.start + ep.length], written["action"])
        for frame in (0, ep.length // 2, ep.length - 1):
            images = reader.frames(ep, frame)
            for cam in CAMERAS:
                diff = np.abs(images[cam].astype(int) - written["frames"][cam][frame].astype(int))
                # Lossless h264 still subsamples chroma (yuv420p): small per-pixel, tiny on average.
                assert diff.mean() < 4 and images[cam].shape == (32, 32, 3), (cam, frame, diff.mean())


def test_sequential_frames_decode_in_order(lerobot_roots, episodes):
    reader = LeRobotReader(lerobot_roots["v3.0"])
    ep = reader.episodes[1]
    frames = [reader.frames(ep, i)["observation.images.main"] for i in range(ep.length)]
    written = episodes[1]["frames"]["observation.images.main"]
    errors = [[np.abs(f.astype(int) - w.astype(int)).mean() for w in written] for f in frames]
    # Each decoded frame is closest to the frame written at its index (ties: a square resting at a border).
    assert all(row[i] <= min(row) + 1e-9 and row[i] < 4 for i, row in enumerate(errors))


def _builder(reader, tokenizer, **kwargs):
    cfg = make_config([])
    return RobotSampleBuilder(reader, PromptBuilder(tokenizer, cfg.data), action_horizon=5, max_action_dim=8,
                              max_state_dim=8, image_size=32, **kwargs)


def test_v21_and_v30_give_identical_samples(lerobot_roots, tokenizer):
    builders = {v: _builder(LeRobotReader(root), tokenizer) for v, root in lerobot_roots.items()}
    for episode_pos, frame in [(0, 0), (1, 3), (2, 8), (2, 0)]:
        a, b = (builders[v].build(episode_pos, frame, 0, np.random.default_rng(0)) for v in ("v2.1", "v3.0"))
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.position_ids, b.position_ids)
        for pa, pb in zip(a.pixel_values, b.pixel_values):
            torch.testing.assert_close(pa, pb, atol=0, rtol=0)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.state, b.state)


def test_chunks_pad_at_episode_end(lerobot_roots, episodes, tokenizer):
    builder = _builder(LeRobotReader(lerobot_roots["v3.0"]), tokenizer, normalization="none")
    written = episodes[2]
    length = len(written["state"])
    state, actions, is_pad = builder.chunk(2, length - 3)
    np.testing.assert_array_equal(state, written["state"][length - 3])
    assert is_pad.tolist() == [False, False, False, True, True]
    np.testing.assert_array_equal(actions[:3], written["action"][length - 3:])
    np.testing.assert_array_equal(actions[3:], written["action"][[length - 1] * 2])  # last action repeated
    sample = builder.build(2, length - 3, 0, np.random.default_rng(0))
    assert sample.actions.shape == (5, 8) and sample.state.shape == (8,)
    assert sample.action_dim_mask.tolist() == [True] * 4 + [False] * 4
    assert not sample.actions[:, 4:].any() and not sample.state[6:].any()
    assert (sample.labels == -100).all()  # the robot prompt carries no text loss
    n_image_tokens = int((sample.input_ids == tokenizer.image_pad_id).sum())
    assert n_image_tokens == sum(int(g.prod()) // 4 for g in sample.image_grid_thw) and len(sample.image_grid_thw) == 2
    assert written["task"] in tokenizer.decode(sample.input_ids.tolist())


def test_normalization_from_dataset_stats_and_stats_file(lerobot_roots, episodes, tokenizer, tmp_path):
    reader = LeRobotReader(lerobot_roots["v3.0"])
    all_actions = np.concatenate([e["action"] for e in episodes]).astype(np.float64)
    mean_std = _builder(reader, tokenizer).build(0, 0, 0, np.random.default_rng(0))
    expected = (episodes[0]["action"][:5] - all_actions.mean(0)) / (all_actions.std(0) + 1e-6)
    np.testing.assert_allclose(mean_std.actions[:, :4], expected, rtol=1e-5, atol=1e-5)

    stats = {k: {"q01": [-2.0] * d, "q99": [2.0] * d} for k, d in (("observation.state", 6), ("action", 4))}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    quantile = _builder(reader, tokenizer, normalization="quantile", stats_path=str(tmp_path / "stats.json"))
    sample = quantile.build(0, 0, 0, np.random.default_rng(0))
    np.testing.assert_allclose(sample.actions[:, :4], episodes[0]["action"][:5] / 2, rtol=1e-5, atol=1e-5)


def test_quantile_without_quantile_stats_is_a_clear_error(lerobot_roots, tokenizer):
    reader = LeRobotReader(lerobot_roots["v2.1"])
    os.rename(os.path.join(reader.root, "meta", "stats.json"), os.path.join(reader.root, "meta", "stats.bak"))
    try:
        assert reader.stats()["action"]["mean"].shape == (4,)  # v2.1: aggregated episodes_stats.jsonl
        with pytest.raises(ValueError, match=r"'observation.state' lack \['q01', 'q99'\].*compute_norm_stats"):
            _builder(reader, tokenizer, normalization="quantile")
    finally:
        os.rename(os.path.join(reader.root, "meta", "stats.bak"), os.path.join(reader.root, "meta", "stats.json"))


def test_discrete_state_goes_into_the_prompt(lerobot_roots, tokenizer):
    builder = _builder(LeRobotReader(lerobot_roots["v3.0"]), tokenizer, state_mode="discrete")
    text = tokenizer.decode(builder.build(0, 2, 0, np.random.default_rng(0)).input_ids.tolist())
    bins = text.split("State: ")[1].split(";")[0].split()
    assert len(bins) == 6 and all(0 <= int(b) < 256 for b in bins)


def test_augmentation_changes_pixels_deterministically(lerobot_roots, tokenizer):
    reader = LeRobotReader(lerobot_roots["v3.0"])
    plain = _builder(reader, tokenizer).build(0, 0, 0, np.random.default_rng(0))
    aug = _builder(reader, tokenizer, augment=True, wrist_camera_keys=["observation.images.wrist"])
    a, b = (aug.build(0, 0, 0, np.random.default_rng(7)) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.pixel_values, b.pixel_values))
    assert not torch.equal(a.pixel_values[0], plain.pixel_values[0])
    assert a.pixel_values[0].shape == plain.pixel_values[0].shape


def _robot_source(path, **kwargs):
    return DataSource(name="robot", kind="lerobot", path=path, **kwargs)


@pytest.mark.parametrize(
    ("source", "error", "match"),
    [
        (dict(path="/nonexistent/ds"), FileNotFoundError, "/nonexistent/ds"),
        (dict(state_key="observation.joints"), ValueError, "state_key 'observation.joints'"),
        (dict(action_key="actions"), ValueError, "action_key 'actions'"),
        (dict(camera_keys=["observation.images.top"]), ValueError, "camera key 'observation.images.top'"),
        (dict(episodes=[7]), ValueError, r"episodes \[7\]"),
        (dict(stats_path="/nonexistent/stats.json"), FileNotFoundError, "/nonexistent/stats.json"),
    ],
)
def test_bad_robot_config_fails_at_startup_naming_the_culprit(lerobot_roots, tokenizer, source, error, match):
    src = _robot_source(lerobot_roots["v3.0"])
    for key, value in source.items():
        setattr(src, key, value)
    with pytest.raises(error, match=match):
        build_dataloader(make_config([src]), tokenizer, 0, 1)


def test_missing_video_file_fails_at_startup(tmp_path, tokenizer):
    root = write_lerobot_dataset(str(tmp_path / "ds"), synthetic_episodes(2, 6, size=16), fps=10, version="v2.1")
    missing = os.path.join(root, "videos", "chunk-000", "observation.images.wrist", "episode_000001.mp4")
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match="episode_000001.mp4"):
        build_dataloader(make_config([_robot_source(root)]), tokenizer, 0, 1)


@pytest.fixture()
def corrupt_root(tmp_path, lerobot_roots):
    """A copy of the v2.1 dataset whose episode 1 wrist video is garbage."""
    root = str(tmp_path / "corrupt")
    shutil.copytree(lerobot_roots["v2.1"], root)
    with open(os.path.join(root, "videos", "chunk-000", "observation.images.wrist", "episode_000001.mp4"), "wb") as f:
        f.write(b"\x00not an mp4" * 100)
    return root


def test_corrupt_video_is_skipped_and_counted(corrupt_root, tokenizer, episodes):
    loader = build_dataloader(make_config([_robot_source(corrupt_root)]), tokenizer, 0, 1)
    total = sum(len(e["state"]) for e in episodes)
    seen = 0
    for batch in loader:
        seen += len(batch.source_id)
        if seen + loader.skipped_per_source["robot"] >= total:
            break
    assert loader.skipped_per_source["robot"] == len(episodes[1]["state"])
    assert loader.samples_per_source["robot"] == seen


def test_corrupt_video_stops_in_strict_mode(corrupt_root, tokenizer):
    loader = build_dataloader(make_config([_robot_source(corrupt_root)], strict=True), tokenizer, 0, 1)
    with pytest.raises(RuntimeError, match="episode_000001.mp4"):
        for _ in loader:
            pass
