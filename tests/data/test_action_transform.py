"""Actions across embodiments: picked/reordered dimensions, delta actions, stats after the transform,
per-source action masks in one batch, and the config checks against info.json widths."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from tests.data.helpers import make_config
from torchtitan_vla.config import ConfigError, load_stages
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader
from torchtitan_vla.data.action_transform import ActionTransform
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.robot import RobotSampleBuilder, policy_extras

REPO = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compute_norm_stats", REPO / "scripts" / "compute_norm_stats.py")
compute_norm_stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compute_norm_stats)

# Joints 0 and 2 of the stored action relative to state dims 3 and 1; action dim 1 (the "gripper") absolute.
DELTA = {"state_dims": [3, 1, 0], "action_dims": [2, 1, 0], "delta_action_dims": [0, 2], "delta_state_dims": [1, 2]}


def test_transform_round_trip_gives_back_the_absolute_actions():
    t = ActionTransform(**DELTA)
    rng = np.random.default_rng(0)
    state, actions = rng.normal(size=6).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    model = t.to_model(state, actions)
    np.testing.assert_allclose(model[:, 0], actions[:, 2] - state[1])  # selected action 0 vs selected state 1
    np.testing.assert_allclose(model[:, 1], actions[:, 1])  # absolute
    np.testing.assert_allclose(model[:, 2], actions[:, 0] - state[0])
    np.testing.assert_allclose(t.to_robot(state, model), actions[:, [2, 1, 0]], rtol=1e-6)
    assert ActionTransform.from_dict(t.to_dict()) == t


def _source(root: str, name: str = "robot", stats_path: str = "", **fields) -> DataSource:
    return DataSource(name=name, kind="lerobot", path=root, stats_path=stats_path, **fields)


def test_delta_samples_are_normalised_with_stats_computed_after_the_transform(lerobot_roots, tokenizer, tmp_path):
    root = lerobot_roots["v3.0"]
    cfg = make_config([_source(root, **DELTA)])
    transform = ActionTransform(**DELTA)
    stats = compute_norm_stats.compute(root, "observation.state", "action", None, 0, transform, horizon=5)
    reader = LeRobotReader(root)
    # The statistics are those of the delta chunks, not of the stored actions.
    assert not np.allclose(stats["action"]["mean"], reader.action[:, [2, 1, 0]].mean(0))
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(stats))
    from torchtitan_vla.data.prompts import PromptBuilder

    builder = RobotSampleBuilder(reader, PromptBuilder(tokenizer, cfg.data), action_horizon=5, max_action_dim=8,
                                 max_state_dim=8, stats_path=str(path), image_size=32, transform=transform)
    sample = builder.build(1, 2, 0, np.random.default_rng(0))
    ep = reader.episodes[1]
    state = reader.state[ep.start + 2]
    raw = reader.action[ep.start + 2: ep.start + 7]
    mean, std = np.array(stats["action"]["mean"]), np.array(stats["action"]["std"]) + 1e-6
    expected = (transform.to_model(state, raw) - mean) / std
    np.testing.assert_allclose(sample.actions[:, :3], expected, rtol=1e-4, atol=1e-5)
    s_mean, s_std = np.array(stats["observation.state"]["mean"]), np.array(stats["observation.state"]["std"]) + 1e-6
    np.testing.assert_allclose(sample.state[:3], (state[[3, 1, 0]] - s_mean) / s_std, rtol=1e-4, atol=1e-5)
    assert not sample.actions[:, 3:].any() and sample.action_dim_mask.tolist() == [True] * 3 + [False] * 5

    # The served policy gets the same transform and statistics.
    extras = policy_extras(_source(root, stats_path=str(path), **DELTA))
    assert extras["action_transform"] == transform.to_dict() and extras["action_dim"] == 3
    assert extras["state_dim"] == 6 and extras["norm_stats"]["action"]["mean"] == stats["action"]["mean"]


def test_delta_actions_refuse_absolute_or_foreign_stats(lerobot_roots, tokenizer, tmp_path):
    root = lerobot_roots["v3.0"]
    with pytest.raises(ValueError, match=r"meta/stats.*needs statistics computed after it.*compute_norm_stats"):
        build_dataloader(make_config([_source(root, **DELTA)]), tokenizer, 0, 1)
    other = compute_norm_stats.compute(root, "observation.state", "action", None, 0,
                                       ActionTransform(delta_action_dims=[0]), horizon=5)
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match=rf"{path}: the source's transform"):
        build_dataloader(make_config([_source(root, stats_path=str(path), **DELTA)]), tokenizer, 0, 1)


def test_one_batch_mixes_robots_of_different_action_widths(lerobot_roots, tokenizer):
    cfg = make_config([_source(lerobot_roots["v3.0"], "four_dof"),
                       _source(lerobot_roots["v2.1"], "two_dof", action_dims=[3, 0], state_dims=[5, 4, 3])])
    cfg.training.local_batch_size = 16
    batch = next(iter(build_dataloader(cfg, tokenizer, 0, 1)))
    widths = batch.action_dim_mask.sum(1)
    assert set(widths[batch.source_id == 0].tolist()) == {4} and set(widths[batch.source_id == 1].tolist()) == {2}
    assert not batch.actions[batch.source_id == 1][..., 2:].any()  # padded dimensions are zeros
    assert not batch.state[batch.source_id == 1][:, 3:].any()


def _toml(tmp_path, root: str, extra: str) -> str:
    path = tmp_path / "job.toml"
    path.write_text(f"[[data.sources]]\nname = 'robot'\nkind = 'lerobot'\npath = '{root}'\n{extra}\n")
    return str(path)


@pytest.mark.parametrize("extra, message", [
    ("action_dims = [0, 4]", r"data.sources\[0\].action_dims' indices \[4\] are out of range for the 4 dimensions"),
    ("state_dims = [1, 1]", r"data.sources\[0\].state_dims' repeats an index"),
    ("action_dims = [0, 1]\ndelta_action_dims = [2]", r"delta_action_dims' indices \[2\] are out of range for the 2"),
    ("delta_action_dims = [0, 1]\ndelta_state_dims = [0]", r"delta_state_dims' has 1 entries"),
    ("delta_action_dims = [0]", r"data.sources\[0\].stats_path' delta_action_dims need statistics"),
])
def test_config_checks_dims_against_info_json(lerobot_roots, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_stages(_toml(tmp_path, lerobot_roots["v3.0"], extra), [])
