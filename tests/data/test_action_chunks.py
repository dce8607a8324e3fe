"""Normalised action chunks of a source exactly as training builds them, and the FAST fitting script on them."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data.action_chunks import source_action_chunks
from torchtitan_vla.data.action_transform import ActionTransform
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.robot import RobotSampleBuilder
from torchtitan_vla.processing.fast import FastTokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DELTA = {"action_dims": [2, 1, 0], "delta_action_dims": [0, 2], "delta_state_dims": [1, 2]}


@pytest.fixture(scope="module")
def delta_stats(lerobot_roots, tmp_path_factory):
    root = lerobot_roots["v3.0"]
    stats = _script("compute_norm_stats").compute(root, "observation.state", "action", None, 0,
                                                  ActionTransform(**DELTA), horizon=5)
    path = tmp_path_factory.mktemp("stats") / "norm" / "stats.json"
    path.parent.mkdir()
    path.write_text(json.dumps(stats))
    return str(path)


def test_chunks_equal_the_training_samples_actions(lerobot_roots, tokenizer, delta_stats):
    root = lerobot_roots["v3.0"]
    src = DataSource(name="robot", kind="lerobot", path=root, stats_path=delta_stats, **DELTA)
    data = source_action_chunks(src, horizon=5)
    reader = LeRobotReader(root)
    cfg = make_config([src])
    builder = RobotSampleBuilder(reader, PromptBuilder(tokenizer, cfg.data), action_horizon=5, max_action_dim=8,
                                 max_state_dim=8, stats_path=delta_stats, image_size=32,
                                 transform=ActionTransform(**DELTA))
    assert data.chunks.shape == (len(reader.state), 5, 3)
    index = 0
    for pos, ep in enumerate(reader.episodes):
        assert (data.episode[index:index + ep.length] == ep.index).all()
        for frame in (0, ep.length - 3, ep.length - 1):  # the last frames' chunks repeat the final action
            sample = builder.build(pos, frame, 0, np.random.default_rng(0))
            np.testing.assert_allclose(data.chunks[index + frame], sample.actions[:, :3], rtol=1e-6, atol=1e-6)
        index += ep.length


def test_fit_script_writes_the_tokenizer_beside_the_stats_and_reports(lerobot_roots, delta_stats, tmp_path, capsys):
    config = tmp_path / "job.toml"
    # The config may already name the tokenizer the script is about to write.
    config.write_text(f"[model]\nfast_tokenizer_path = '{tmp_path}/not_yet.json'\n[action_expert]\naction_horizon = 5\n"
                      f"[[data.sources]]\nname = 'robot'\nkind = 'lerobot'\npath = '{lerobot_roots['v3.0']}'\n"
                      f"stats_path = '{delta_stats}'\naction_dims = [2, 1, 0]\ndelta_action_dims = [0, 2]\n"
                      "delta_state_dims = [1, 2]\n")
    fit = _script("fit_fast_tokenizer")
    assert fit.main(["--config", str(config), "--vocab-size", "300", "--holdout", "0.3"]) == 0
    out = pathlib.Path(delta_stats).parent / "fast_tokenizer.json"
    tokenizer = FastTokenizer.load(out)
    assert (tokenizer.horizon, tokenizer.action_dim, tokenizer.scale) == (5, 3, 10.0)
    report = json.loads(out.with_name("fast_tokenizer.report.json").read_text())
    assert report == json.loads(capsys.readouterr().out.rsplit("\nwrote ", 1)[0])
    held_out = report["held_out"]
    assert report["held_out_episodes"] == 1 and held_out["chunks"] + report["fit_chunks"] == len(LeRobotReader(lerobot_roots["v3.0"]).state)
    assert held_out["max_l2_error_per_dim"] <= tokenizer.l2_error_bound + 1e-5 or held_out["clamped_coefficients"] > 0
    assert 0 < held_out["tokens_per_chunk"]["mean"] <= held_out["tokens_per_chunk"]["max"] <= 15
    assert held_out["invalid_decodes"] == 0

    assert fit.main(["--config", str(config), "--source", "nope"]) == 2
    assert "no LeRobot source 'nope'" in capsys.readouterr().err
