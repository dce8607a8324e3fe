"""scripts/ablate_fast.py: its variants resolve to what their names say, and ``flow_fast_ki`` is exactly the
written-out recipe train_configs/debug/pi05_knowledge_insulation.toml."""

import importlib.util
from pathlib import Path

from torchtitan_vla.config import load_config, parse_command_line, resolve_stages

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("ablate_fast", REPO / "scripts" / "ablate_fast.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stages(config, overrides=()):
    cli = parse_command_line(["--config", str(REPO / config), *overrides])
    return {s.name: s.config for s in resolve_stages(load_config(cli.config_path, cli.overrides))}


def test_variants_and_the_written_recipe():
    script = _script()
    args = script.argparse.Namespace(robot_stages=["cotrain", "finetune"], fast_tokenizer="outputs/fast/toyworld_fast.json",
                                     fast_loss_weight=1.0)
    table = script.variants(args)
    flow = _stages(script.DEBUG_CONFIG, table["flow"])
    ki = _stages(script.DEBUG_CONFIG, table["flow_fast_ki"])
    fast = _stages(script.DEBUG_CONFIG, table["pi0_fast"])
    recipe = _stages("train_configs/debug/pi05_knowledge_insulation.toml")
    for name in ("vlm_pretrain", "cotrain", "finetune"):
        assert recipe[name].training == ki[name].training and recipe[name].model == ki[name].model
        assert recipe[name].data == ki[name].data == flow[name].data and recipe[name].optimizer == flow[name].optimizer
    assert flow["cotrain"].model.fast_tokenizer_path == "" and flow["cotrain"].training.fast_loss_weight == 0.0
    for name in ("cotrain", "finetune"):
        assert ki[name].training.knowledge_insulation and ki[name].training.fast_loss_weight == 1.0
        assert ki[name].training.action_loss_weight == 1.0 and ki[name].model.action_decoding == "flow"
        assert fast[name].training.action_loss_weight == 0.0 and fast[name].training.fast_loss_weight == 1.0
        assert fast[name].model.action_decoding == "fast" and "expert" not in fast[name].training.trainable
    assert fast["vlm_pretrain"].training == flow["vlm_pretrain"].training


def test_variants_start_from_the_shared_stage_last_checkpoint(tmp_path, monkeypatch):
    """The variants load the shared stage's final checkpoint, with its step count as the command line sets it."""
    script = _script()
    runs = {}

    def fake_run(args, name, overrides, base, dump_folder):
        runs[name] = overrides
        return {"variant": name, "overrides": overrides, "returncode": 0, "seconds": 0.0,
                "run_folder": str(tmp_path / name)}

    monkeypatch.setattr(script, "run_variant", fake_run)
    tokenizer = tmp_path / "fast.json"
    tokenizer.write_text("{}")
    assert script.main(["--fast-tokenizer", str(tokenizer), "--variants", "pi0_fast", "--output", str(tmp_path / "a.json"),
                        "--", "--curriculum.stages.vlm_pretrain.steps=7"]) == 0
    assert f"--checkpoint.initial_load_path={tmp_path / 'vlm_pretrain'}/checkpoints/step-7" in runs["pi0_fast"]
