"""Loading: precedence, typing and messages of TOML and command-line values, stage resolution."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from conftest import REPO, assert_refused, run_train, write_toml

from torchtitan_vla.config import ConfigError, JobConfig, load_config, parse_command_line, resolve_stages
from torchtitan_vla.config.docs import undocumented_fields
from torchtitan_vla.config.model import Flavor

DEBUG_TOML = REPO / "train_configs" / "debug" / "curriculum.toml"
write = write_toml


def test_precedence_cli_over_toml_over_defaults(tmp_path):
    path = write(
        tmp_path,
        """
        [training]
        steps = 7
        local_batch_size = 3
        [optimizer]
        lr = 0.5
        """,
    )
    cfg = load_config(path, [("training.steps", "11")]).config
    assert cfg.training.steps == 11  # CLI beats TOML
    assert cfg.training.local_batch_size == 3  # TOML beats default
    assert cfg.optimizer.lr == 0.5
    assert cfg.training.max_norm == JobConfig().training.max_norm  # default kept


def test_cli_value_forms(tmp_path):
    path = write(tmp_path, "")
    cli = parse_command_line(
        [
            "--config",
            path,
            "--training.trainable=decoder,expert",
            "--data.mixture",
            "{ robot = 0.8, web = 0.2 }",
            "--compile.enable",
            "--job.name=123",
            "--optimizer.lr=1e-4",
        ]
    )
    cfg = load_config(cli.config_path, cli.overrides).config
    assert cfg.training.trainable == ["decoder", "expert"]
    assert cfg.data.mixture == {"robot": 0.8, "web": 0.2}
    assert cfg.compile.enable is True
    assert cfg.job.name == "123"  # strings stay verbatim, never parsed as numbers
    assert cfg.optimizer.lr == pytest.approx(1e-4)


def test_int_accepted_for_float_but_not_bool_for_int(tmp_path):
    cfg = load_config(write(tmp_path, "[optimizer]\nlr = 1\n")).config
    assert isinstance(cfg.optimizer.lr, float) and cfg.optimizer.lr == 1.0
    with pytest.raises(ConfigError, match=r"'training.steps' expects int, got bool True"):
        load_config(write(tmp_path, "[training]\nsteps = true\n"))


@pytest.mark.parametrize(
    "toml, expected",
    [
        ("[trainig]\nsteps = 3\n", r"unknown section 'trainig'; did you mean 'training'\?"),
        ("[training]\nstepz = 3\n", r"unknown key 'training.stepz'; did you mean 'training.steps'\?"),
        ("[training]\nsteps = 'ten'\n", r"'training.steps' expects int, got str 'ten'"),
        ("[data]\nmixture = { robot = 'x' }\n", r"'data.mixture.robot' expects float, got str 'x'"),
        ("[[data.sources]]\nname = 'a'\nkind = 'lerobot'\npaht = '/x'\n", r"unknown key 'data.sources\[0\].paht'"),
        ("[lr_schedule]\nkind = 'cosin'\n",
         r"'lr_schedule.kind' must be one of \"cosine\" \| \"wsd\" \| \"linear\" \| \"constant\", got str 'cosin'; "
         r"did you mean 'cosine'\?"),
        ("[checkpoint]\nexport_dtype = 'float16'\n",
         r"'checkpoint.export_dtype' must be one of \"float32\" \| \"bfloat16\", got str 'float16'"),
        ("[[curriculum.stages]]\nname = 'a'\nsteps = 1\n[curriculum.stages.optimizer]\nimplementation = 'fusd'\n",
         r"'curriculum.stages\[0\].optimizer.implementation' must be one of .*; did you mean 'fused'\?"),
        ("[[data.sources]]\nname = 'a'\npath = '/x'\n", r"'data.sources\[0\]' needs 'kind'"),
        ("[[data.sources]]\nname = 'a'\nkind = 'lerobbot'\npath = '/x'\n", r"did you mean 'lerobot'\?"),
        ("[optimizer]\ncomponent_lr = { visoin = 1e-5 }\n",
         r"'optimizer.component_lr.visoin' must be one of .*; did you mean 'vision'\?"),
        ("[model]\nflavor = '2b'\n", r"'model.flavor' must be one of .*; did you mean '2B'\?"),
    ],
)
def test_bad_toml_names_file_key_and_hint(tmp_path, toml, expected):
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert path in str(info.value)


def test_missing_file_names_path(tmp_path):
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_config(missing)


def test_invalid_toml_syntax_names_path(tmp_path):
    path = write(tmp_path, "[training\nsteps = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


CURRICULUM = """
[training]
steps = 5
trainable = ["vision", "decoder", "expert"]
[optimizer]
lr = 1e-3
[data]
mixture = { web = 1.0 }

[[curriculum.stages]]
name = "pretrain"
steps = 10
[curriculum.stages.training]
trainable = ["vision", "decoder"]
action_loss_weight = 0.0

[[curriculum.stages]]
name = "cotrain"
steps = 20
[curriculum.stages.data]
mixture = { robot = 0.8, web = 0.2 }
[curriculum.stages.optimizer]
lr = 3e-4
"""


def test_stages_resolve_into_complete_configs(tmp_path):
    stages = resolve_stages(load_config(write(tmp_path, CURRICULUM)))
    assert [s.name for s in stages] == ["pretrain", "cotrain"]
    pre, co = (s.config for s in stages)
    assert (stages[0].steps, pre.training.steps) == (10, 10)
    assert pre.training.trainable == ["vision", "decoder"] and pre.training.action_loss_weight == 0.0
    assert pre.optimizer.lr == 1e-3 and pre.data.mixture == {"web": 1.0}
    # Stage 2 starts again from the base, not from stage 1.
    assert co.training.trainable == ["vision", "decoder", "expert"] and co.training.action_loss_weight == 1.0
    assert co.optimizer.lr == 3e-4
    assert co.data.mixture == {"robot": 0.8, "web": 0.2}


def test_stage_mixture_replaces_rather_than_merges(tmp_path):
    toml = CURRICULUM.replace('mixture = { robot = 0.8, web = 0.2 }', 'mixture = { robot = 1.0 }')
    co = resolve_stages(load_config(write(tmp_path, toml)))[1].config
    assert co.data.mixture == {"robot": 1.0}  # the base's "web" must not leak into the stage


def test_cli_beats_stage_overrides_and_targets_one_stage(tmp_path):
    loaded = load_config(
        write(tmp_path, CURRICULUM),
        [("optimizer.lr", "0.01"), ("curriculum.stages.cotrain.steps", "2"),
         ("curriculum.stages.pretrain.training.max_norm", "0.5")],
    )
    pre, co = resolve_stages(loaded)
    assert pre.config.optimizer.lr == 0.01 and co.config.optimizer.lr == 0.01
    assert co.steps == 2 and co.config.training.steps == 2 and pre.steps == 10
    assert pre.config.training.max_norm == 0.5 and co.config.training.max_norm == 1.0


def test_stage_errors(tmp_path):
    bad_section = CURRICULUM + "[curriculum.stages.trainig]\nsteps = 1\n"
    with pytest.raises(ConfigError, match=r"unknown key 'curriculum.stages\[1\].trainig'; did you mean"):
        load_config(write(tmp_path, bad_section))
    bad_key = CURRICULUM.replace("lr = 3e-4", "lrr = 3e-4")
    with pytest.raises(ConfigError, match=r"curriculum.stages\[1\].optimizer.lrr"):
        load_config(write(tmp_path, bad_key))
    with pytest.raises(ConfigError, match="no curriculum stage named 'cotrian'; did you mean 'cotrain'"):
        load_config(write(tmp_path, CURRICULUM), [("curriculum.stages.cotrian.steps", "1")])
    dup = CURRICULUM.replace('name = "cotrain"', 'name = "pretrain"')
    with pytest.raises(ConfigError, match="stage names must be unique"):
        load_config(write(tmp_path, dup))
    with pytest.raises(ConfigError, match=r"'curriculum.stages\[0\].steps' must be >= 1, got 0"):
        load_config(write(tmp_path, CURRICULUM.replace("steps = 10", "steps = 0")))


def test_no_stages_means_one_stage_of_training_steps(tmp_path):
    (stage,) = resolve_stages(load_config(write(tmp_path, "[training]\nsteps = 4\n")))
    assert (stage.name, stage.steps) == ("train", 4)


def _config_dataclasses():
    seen, todo = [], [JobConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            for candidate in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(candidate):
                    todo.append(candidate)
    return seen


def test_every_config_field_has_a_docstring():
    missing = [name for cls in _config_dataclasses() for name in undocumented_fields(cls)]
    assert missing == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "missing/file.toml"], "config file not found: missing/file.toml"),
        (["--config", str(DEBUG_TOML), "--trainig.steps=1"], "unknown section 'trainig'; did you mean 'training'"),
        (["--config", str(DEBUG_TOML), "--training.steps=abc"], "'training.steps' expects int, got str 'abc'"),
        (["--config", str(DEBUG_TOML), "stray"], "unexpected argument 'stray'"),
        (["--config", str(DEBUG_TOML), "--curriculum.stages.finetune.lr_schedule.kind=cosin"],
         "'curriculum.stages.finetune.lr_schedule.kind' must be one of \"cosine\" | \"wsd\" | \"linear\" | "
         "\"constant\", got str 'cosin'; "
         "did you mean 'cosine'?"),
        (["--config", str(DEBUG_TOML), "--action_expert.prefix_attention=bidirectionnal"],
         "did you mean 'bidirectional'?"),
        ([], "--config FILE.toml is required"),
    ],
)
def test_train_py_errors_are_one_line_exit_2_no_traceback(args, message):
    assert_refused(run_train(*args), message)


@pytest.mark.parametrize("size", ["2b", "4b", "8b"])
def test_real_size_curricula_resolve(size):
    path = REPO / "train_configs" / f"qwen3vl_{size}" / "curriculum.toml"
    # Its data and weight paths are placeholders of a cluster: refused at load, naming the first one.
    assert_refused(run_train("--config", str(path), "--print-config"), "'data.sources[0].path' = '/data/cc12m' does not exist")
    stages = resolve_stages(load_config(str(path)))
    assert [s.name for s in stages] == ["vlm_pretrain", "cotrain", "finetune"]
    pretrain, cotrain, finetune = (s.config for s in stages)
    assert pretrain.model.flavor == size.upper()
    assert set(pretrain.data.mixture) == {"obelics", "cc12m"} and pretrain.training.action_loss_weight == 0.0
    names = {s.name: s.kind for s in cotrain.data.sources}
    assert any(names[n] == "lerobot" for n in cotrain.data.mixture) and any(
        names[n] in ("obelics", "cc12m") for n in cotrain.data.mixture
    )
    assert all(names[n] == "lerobot" for n in finetune.data.mixture)
    assert all(s.config.training.knowledge_insulation for s in stages)


def test_flavor_choices_are_the_flavor_table():
    from torchtitan_vla.models.qwen3_vl.args import FLAVORS

    assert set(typing.get_args(Flavor)) == set(FLAVORS)
