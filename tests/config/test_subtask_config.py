"""Subtask annotations in the configuration: the key is checked against the dataset at load; the
multi-step recipe and its flat twin load."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, assert_refused, run_train

from torchtitan_vla.config import load_config, load_stages
from torchtitan_vla.config.stages import resolve_stages


def test_subtask_key_must_be_a_per_frame_language_column(job):
    path = job.toml()
    text = Path(path).read_text().replace('wrist_camera_keys = ["observation.images.wrist"]\n',
                                          'wrist_camera_keys = ["observation.images.wrist"]\nsubtask_key = "subtask"\n', 1)
    Path(path).write_text(text)
    line = assert_refused(run_train("--config", path, "--print-config"), path)
    assert "stage 'cotrain'" in line and "'data.sources[1].subtask_key' names the per-frame language column" in line
    info_path = Path(job.robot) / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["subtask_index"] = {"dtype": "int64", "shape": [1]}  # LeRobot's per-frame subtask index
    info_path.write_text(json.dumps(info))
    load_stages(path)


def test_multi_step_recipe_trains_the_subtask_and_its_flat_twin_does_not():
    recipe = str(REPO / "train_configs" / "debug" / "multistep.toml")
    flat = [("curriculum.stages.cotrain.data.mixture", "{ toy_robot_flat = 0.8, toy_captions = 0.1, toy_documents = 0.1 }"),
            ("curriculum.stages.finetune.data.mixture", "{ toy_robot_flat = 1.0 }")]
    for overrides, keys in (([], {"subtask"}), (flat, {""})):
        for stage in resolve_stages(load_config(recipe, overrides))[1:]:  # the robot stages
            data = stage.config.data
            robot = [s for s in data.sources if s.name in data.mixture and s.kind == "lerobot"]
            assert {s.subtask_key for s in robot} == keys
