"""Value constraints declared on the fields are refused at load, in TOML and on the command line alike:
``python train.py --print-config`` exits 2 with one line naming the key, the rule and the value."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from conftest import assert_refused, run_train, write_toml

from torchtitan_vla.config import JobConfig, Range, load_config
from torchtitan_vla.config.coercion import field_types

# (dotted key, bad value as TOML, the rule the message must state)
BAD_VALUES = [
    ("training.local_batch_size", "0", "must be >= 1, got 0"),
    ("training.global_batch_size", "0", "must be -1 or >= 1, got 0"),
    ("training.global_batch_size", "-2", "must be -1 or >= 1, got -2"),
    ("training.steps", "0", "must be >= 1, got 0"),
    ("metrics.log_freq", "0", "must be >= 1, got 0"),
    ("checkpoint.interval", "0", "must be >= 1, got 0"),
    ("checkpoint.keep_latest_k", "-1", "must be >= 0, got -1"),
    ("checkpoint.load_step", "-2", "must be -1 or >= 0, got -2"),
    ("data.num_workers", "-1", "must be >= 0, got -1"),
    ("data.prefetch_factor", "0", "must be >= 1, got 0"),
    ("data.max_seq_len", "0", "must be >= 1, got 0"),
    ("data.image_size", "100", "must be >= 32, multiple of 32, got 100"),
    ("data.image_size", "0", "must be >= 32, multiple of 32, got 0"),
    ("data.mixture", "{ web = -0.5 }", "'data.mixture.web' must be >= 0, got -0.5"),
    ("optimizer.lr", "-1e-4", "must be >= 0, got -0.0001"),
    ("optimizer.component_lr", "{ expert = -1.0 }", "'optimizer.component_lr.expert' must be >= 0, got -1.0"),
    ("optimizer.beta1", "1.0", "must be in [0, 1), got 1.0"),
    ("optimizer.beta2", "-0.1", "must be in [0, 1), got -0.1"),
    ("optimizer.eps", "0", "must be > 0, got 0.0"),
    ("optimizer.weight_decay", "-0.01", "must be >= 0, got -0.01"),
    ("optimizer.component_weight_decay", "{ vision = -1 }", "must be >= 0, got -1.0"),
    ("lr_schedule.warmup_steps", "-1", "must be >= 0, got -1"),
    ("lr_schedule.min_lr_ratio", "1.5", "must be in [0, 1], got 1.5"),
    ("lr_schedule.decay_ratio", "0", "must be in (0, 1], got 0.0"),
    ("training.max_norm", "-1", "must be >= 0, got -1.0"),
    ("training.ema_decay", "1", "must be in [0, 1), got 1.0"),
    ("training.gc_freq", "-1", "must be >= 0, got -1"),
    ("training.validation_freq", "-1", "must be >= 0, got -1"),
    ("training.validation_steps", "0", "must be >= 1, got 0"),
    ("training.flow_time_alpha", "0", "must be > 0, got 0.0"),
    ("action_expert.action_horizon", "0", "must be >= 1, got 0"),
    ("action_expert.max_action_dim", "0", "must be >= 1, got 0"),
    ("action_expert.max_state_dim", "0", "must be >= 1, got 0"),
    ("action_expert.num_inference_steps", "0", "must be >= 1, got 0"),
    ("action_expert.hidden_size", "-64", "must be >= 0, got -64"),
    ("action_expert.state_bins", "1", "must be >= 2, got 1"),
    ("metrics.peak_flops", "-1.0", "must be >= 0, got -1.0"),
    ("eval.closed_loop_episodes", "-1", "must be >= 0, got -1"),
    ("eval.max_episode_steps", "0", "must be >= 1, got 0"),
    ("eval.execute_steps", "0", "must be >= 1, got 0"),
    ("model.lora_rank", "-4", "must be >= 0, got -4"),
    ("parallelism.data_parallel_shard_degree", "0", "must be -1 or >= 1, got 0"),
    ("activation_checkpoint.selective_option", "0", "expects \"op\" | int (>= 1), got int 0"),
    ("debug.sigkill_at_step", "-1", "must be >= 0, got -1"),
]


@pytest.mark.parametrize("key, value, rule", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_bad_value_refused_in_toml(tmp_path, key, value, rule):
    section, name = key.split(".")
    path = write_toml(tmp_path, f"[{section}]\n{name} = {value}\n")
    line = assert_refused(run_train("--config", path, "--print-config"), path, rule)
    assert f"'{key}" in line


@pytest.mark.parametrize("key, value, rule", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_bad_value_refused_on_the_command_line(tmp_path, key, value, rule):
    path = write_toml(tmp_path, "")
    line = assert_refused(run_train("--config", path, f"--{key}={value}", "--print-config"), "command line", rule)
    assert f"'{key}" in line


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_stage_steps_must_be_positive_in_toml_and_on_the_command_line(tmp_path, steps):
    path = write_toml(tmp_path, f"[[curriculum.stages]]\nname = 'a'\nsteps = {steps}\n")
    assert_refused(run_train("--config", path, "--print-config"), f"'curriculum.stages[0].steps' must be >= 1, got {steps}")
    path = write_toml(tmp_path, "[[curriculum.stages]]\nname = 'a'\nsteps = 4\n")
    assert_refused(run_train("--config", path, f"--curriculum.stages.a.steps={steps}", "--print-config"),
                   f"'curriculum.stages.a.steps' must be >= 1, got {steps}")


def test_misspelt_component_on_the_command_line_is_one_line(tmp_path):
    path = write_toml(tmp_path, "")
    assert_refused(run_train("--config", path, '--activation_checkpoint.components=["decodr"]', "--print-config"),
                   "'activation_checkpoint.components[0]' must be one of", "did you mean 'decoder'?")


def test_lora_components_exclude_vision(tmp_path):
    path = write_toml(tmp_path, "[model]\nlora_components = ['vision']\n")
    assert_refused(run_train("--config", path, "--print-config"),
                   "'model.lora_components[0]' must be one of \"decoder\" | \"expert\"")


def test_accepted_edges(tmp_path):
    path = write_toml(tmp_path, """
        [training]
        global_batch_size = -1
        ema_decay = 0.0
        [optimizer]
        lr = 0
        beta1 = 0.0
        [lr_schedule]
        min_lr_ratio = 1.0
        decay_ratio = 1.0
        [data]
        image_size = 32
        num_workers = 0
        [activation_checkpoint]
        selective_option = 2
        """)
    cfg = load_config(path).config
    assert (cfg.data.image_size, cfg.activation_checkpoint.selective_option, cfg.optimizer.lr) == (32, 2, 0.0)
    cfg = load_config(path, [("activation_checkpoint.selective_option", "op")]).config
    assert cfg.activation_checkpoint.selective_option == "op"


def _fields(cls):
    for f in dataclasses.fields(cls):
        tp = field_types(cls)[f.name]
        yield cls, f, tp
        for candidate in (tp, *typing.get_args(tp)):
            if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
                yield from _fields(candidate)


def _ranges(tp) -> list[Range]:
    if typing.get_origin(tp) is typing.Annotated:
        return [m for m in typing.get_args(tp)[1:] if isinstance(m, Range)]
    return [r for arg in typing.get_args(tp) for r in _ranges(arg)]


def test_every_default_satisfies_its_own_constraint():
    for cls, f, tp in _fields(JobConfig):
        if f.default is dataclasses.MISSING:
            continue
        for rule in _ranges(tp):
            if isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
                assert rule.allows(f.default), f"{cls.__name__}.{f.name} = {f.default} breaks {rule.describe()}"


def test_every_number_field_declares_a_range():
    """Counts, sizes, rates: a plain ``int``/``float`` field would accept anything, so none is left plain."""
    plain = [f"{cls.__name__}.{f.name}" for cls, f, tp in _fields(JobConfig) if tp in (int, float)]
    assert plain == []
