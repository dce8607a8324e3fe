"""Cross-checks of every resolved stage at load: one line naming file, stage and key, exit 2."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import assert_refused, fake_lerobot, run_train

from torchtitan_vla.config import ConfigError, load_stages


def refused(job, extra: str = "", cli: tuple[str, ...] = (), **paths) -> str:
    path = job.toml(extra, **paths)
    return assert_refused(run_train("--config", path, *cli, "--print-config"), path if not cli else "")


def test_the_base_job_is_accepted(job):
    _, stages = load_stages(job.toml())
    assert [s.name for s in stages] == ["pretrain", "cotrain"]


@pytest.mark.parametrize(
    "cli, fragments",
    [
        (("--action_expert.enable=false", "--training.trainable=vision,expert"),
         ["stage 'pretrain'", "'training.trainable' names component 'expert', which this model does not have"]),
        (("--action_expert.enable=false", "--optimizer.component_lr={ expert = 1e-4 }"),
         ["'optimizer.component_lr' names component 'expert'"]),
        (("--action_expert.enable=false", "--compile.components=decoder,expert"), ["'compile.components' names component 'expert'"]),
        (("--action_expert.enable=false", "--model.lora_rank=4", "--model.lora_components=expert"),
         ["'model.lora_components' names component 'expert'"]),
        (("--data.validation_mixture={ wbe = 1.0 }",), ["'data.validation_mixture.wbe' names source 'wbe'", "did you mean 'web'?"]),
        (("--data.mixture={ web = 0.0 }",), ["stage 'pretrain'", "'data.mixture' weights must sum to more than 0"]),
        (("--training.validation_freq=10",), ["'training.validation_freq' is 10 but data.validation_mixture is empty"]),
        (("--training.local_batch_size=3", "--training.global_batch_size=8"),
         ["'training.global_batch_size' 8 is not a multiple of training.local_batch_size 3"]),
        (("--model.load_hf_weights", "--checkpoint.initial_load_path=."), ["'model.load_hf_weights' and checkpoint.initial_load_path exclude each other"]),
        (("--checkpoint.initial_load_model_only=false",), ["'checkpoint.initial_load_model_only' = false is not supported"]),
        (("--checkpoint.load_step=3", "--checkpoint.enable=false"), ["'checkpoint.load_step' = 3 needs checkpoint.enable = true"]),
        (("--checkpoint.initial_load_path=/no/such/ckpt",), ["'checkpoint.initial_load_path' = '/no/such/ckpt' does not exist"]),
        (("--model.load_hf_weights",), ["'model.load_hf_weights' needs model.hf_assets_path"]),
        (("--model.load_hf_weights", "--model.hf_assets_path=."), ["'model.hf_assets_path' = '.' has no config.json"]),
        (("--model.tokenizer_path=/no/tokenizer.json",), ["'model.tokenizer_path' = '/no/tokenizer.json' does not exist"]),
        (("--eval.closed_loop_episodes=5", "--eval.toyworld_data=/no/world"), ["'eval.toyworld_data' = '/no/world' does not exist"]),
        (("--eval.closed_loop_episodes=5", "--eval.execute_steps=5"), ["'eval.execute_steps' 5 exceeds action_expert.action_horizon 4"]),
        (("--training.flow_time_scale=0.9", "--training.flow_time_offset=0.2"), ["'training.flow_time_scale' 0.9 + training.flow_time_offset 0.2 exceeds 1"]),
        (("--data.image_min_pixels=4096", "--data.image_max_pixels=1024"), ["'data.image_min_pixels' 4096 exceeds data.image_max_pixels 1024"]),
        (("--action_expert.max_state_dim=1",),
         ["stage 'cotrain'", "'data.sources[1].state_key' 'observation.state'", "is 2 wide, more than action_expert.max_state_dim 1"]),
        (("--action_expert.max_action_dim=1",), ["'data.sources[1].action_key'", "more than action_expert.max_action_dim 1"]),
        (("--parallelism.expert_parallel_degree=2",),
         ["parallelism.expert_parallel_degree=2 needs an MoE flavor; model.flavor 'debug' has no experts"]),
        (("--model.flavor=debug-moe", "--parallelism.expert_parallel_degree=3"),
         ["parallelism.expert_parallel_degree=3 does not divide the 8 experts of model.flavor 'debug-moe'"]),
        (("--model.flavor=debug-moe", "--parallelism.expert_parallel_degree=2", "--parallelism.data_parallel_shard_degree=3"),
         ["'parallelism.expert_parallel_degree' = 2 does not divide parallelism.data_parallel_shard_degree 3"]),
        (("--model.flavor=debug-moe", "--parallelism.expert_parallel_degree=2", "--parallelism.tensor_parallel_degree=8"),
         ["parallelism.expert_parallel_degree=2 x tensor_parallel_degree=8 exceeds the 8 experts"]),
        (("--float8.enable", "--parallelism.tensor_parallel_degree=2"),
         ["'float8.enable' with parallelism.tensor_parallel_degree > 1 is not supported yet"]),
        (("--fault_tolerance.enable", "--fault_tolerance.replica_id=2", "--fault_tolerance.group_size=2"),
         ["'fault_tolerance.replica_id' = 2 must be below group_size = 2"]),
    ],
)
def test_cross_check_refused_on_the_command_line(job, cli, fragments):
    line = refused(job, cli=cli)
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_fault_tolerance_loads_and_names_the_missing_extra(job, monkeypatch):
    ft = [("fault_tolerance.enable", "true"), ("fault_tolerance.group_size", "2"), ("fault_tolerance.replica_id", "1")]
    _, stages = load_stages(job.toml(), ft)
    assert stages[0].config.fault_tolerance.replica_id == 1
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchft" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"'fault_tolerance.enable' needs torchft, which is not installed: pip install '\.\[ft\]'"):
        load_stages(job.toml(), ft)


def test_evaluation_off_ignores_its_data_folder(job):
    load_stages(job.toml(), [("eval.toyworld_data", "/no/world")])


def test_hf_assets_with_config_json_are_accepted(job, tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    _, stages = load_stages(job.toml(), [("model.load_hf_weights", "true"), ("model.hf_assets_path", str(tmp_path / "hf"))])
    assert stages[0].config.model.load_hf_weights


SOURCE_EDITS = [
    ('name = "robot"', 'name = "web"', ["'data.sources[1].name' 'web' is used by more than one source"]),
    ('name = "robot"', 'name = ""', ["'data.sources[1].name' must not be empty"]),
    ('path = "{web}"', 'path = "{web}/missing"', ["'data.sources[0].path'", "missing' does not exist (source 'web')"]),
    ('state_key = "observation.state"', 'state_key = "observation.stat"',
     ["'data.sources[1].state_key' names the feature", "'observation.stat'", "did you mean 'observation.state'?"]),
    ('camera_keys = ["observation.images.top", ', 'camera_keys = ["observation.images.tpo", ',
     ["'data.sources[1].camera_keys' names the video feature", "did you mean 'observation.images.top'?"]),
    ('wrist_camera_keys = ["observation.images.wrist"]', 'wrist_camera_keys = ["observation.state"]',
     ["'data.sources[1].wrist_camera_keys' names the video feature", "'observation.state'"]),
    ('camera_keys = ["observation.images.top", "observation.images.wrist"]', 'camera_keys = ["observation.images.top"]',
     ["'data.sources[1].wrist_camera_keys' names the camera 'observation.images.wrist', not one of "
      "['observation.images.top']"]),
    ('action_key = "action"', 'action_key = "actions"', ["'data.sources[1].action_key'", "did you mean 'action'?"]),
]


@pytest.mark.parametrize("old, new, fragments", SOURCE_EDITS)
def test_source_problems_are_refused_in_toml(job, old, new, fragments):
    path = job.toml()
    text = open(path).read()
    if "_key = " in old and old not in text:  # keys left at their defaults: add them to the robot source
        text = text.replace('name = "robot"', f'name = "robot"\n{old}')
    old, new = old.format(web=job.web), new.format(web=job.web)
    assert old in text
    open(path, "w").write(text.replace(old, new, 1))
    line = assert_refused(run_train("--config", path, "--print-config"), path)
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_wrist_camera_defaults_to_every_video_feature(job):
    path = job.toml()
    open(path, "w").write(open(path).read().replace(
        'camera_keys = ["observation.images.top", "observation.images.wrist"]\n', "", 1))
    load_stages(path)


def test_lerobot_source_without_info_json_is_refused(job, tmp_path):
    (tmp_path / "empty").mkdir()
    line = refused(job, robot=str(tmp_path / "empty"))
    assert "'data.sources[1].path'" in line and "is not a LeRobot dataset" in line


def test_hf_web_path_is_exempt_from_the_existence_check(job):
    path = job.toml(web="hf://pixparse/cc12m-wds")
    load_stages(path)


def test_only_the_lerobot_sources_a_stage_reads_are_opened(job, tmp_path):
    """A source no stage mixes in is not read (its meta/info.json may be absent)."""
    fake_lerobot(tmp_path / "narrow", state_dim=9)
    path = job.toml(robot=str(tmp_path / "narrow"))
    open(path, "w").write(open(path).read().replace("mixture = { robot = 0.8, web = 0.2 }", "mixture = { web = 1.0 }"))
    load_stages(path)
