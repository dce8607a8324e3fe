"""scripts/ablate_curriculum.py: each ablation is the debug curriculum with a few overrides that resolve to
what its name says, and a mistake is caught before the first (long) job starts."""

import importlib.util
from pathlib import Path

import pytest

from torchtitan_vla.config import ConfigError, load_config, parse_command_line, resolve_stages
from torchtitan_vla.train.curriculum import plan_stages

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "train_configs" / "debug" / "curriculum.toml"


def _script():
    spec = importlib.util.spec_from_file_location("ablate_curriculum", REPO / "scripts" / "ablate_curriculum.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _planned(overrides):
    cli = parse_command_line(["--config", str(CONFIG), *overrides])
    loaded = load_config(cli.config_path, cli.overrides)
    cfg = loaded.config
    return {p.stage.name: p.stage.config for p in plan_stages(resolve_stages(loaded), cfg.curriculum.only_stage,
                                                               cfg.curriculum.skip_stages)}


def test_variants_change_only_what_their_names_say():
    script = _script()
    args = script.argparse.Namespace(pretrain_stage="vlm_pretrain", cotrain_stage="cotrain", robot_source="toy_robot")
    table = script.variants(args)
    full = _planned(table["full"])
    assert list(full) == ["vlm_pretrain", "cotrain", "finetune"]
    assert set(full["cotrain"].data.mixture) == {"toy_robot", "toy_captions", "toy_documents"}

    no_pretrain = _planned(table["no_pretrain"])
    assert list(no_pretrain) == ["cotrain", "finetune"]
    assert no_pretrain["cotrain"].data.mixture == full["cotrain"].data.mixture

    no_web = _planned(table["no_web_in_cotrain"])
    assert list(no_web) == ["vlm_pretrain", "cotrain", "finetune"]
    assert no_web["cotrain"].data.mixture == {"toy_robot": 1.0}
    assert no_web["cotrain"].training.text_loss_weight == 0.0
    assert no_web["cotrain"].optimizer == full["cotrain"].optimizer
    assert no_web["vlm_pretrain"].data.mixture == full["vlm_pretrain"].data.mixture


def test_mistakes_fail_before_any_job_runs(tmp_path):
    script = _script()
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--variants", "full,no_stage_one", "--output", str(tmp_path / "a.json")])
    assert exit_info.value.code == 2
    with pytest.raises(ConfigError, match="skip_stages names \\['pretrain'\\]"):
        script.main(["--pretrain-stage", "pretrain", "--output", str(tmp_path / "a.json")])
    assert not (tmp_path / "a.json").exists()
