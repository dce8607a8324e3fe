"""``--print-config`` is the truth: its TOML text is what each stage runs with."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import REPO, fake_lerobot, run_train

from torchtitan_vla.config import config_to_dict, load_stages
from torchtitan_vla.config.printing import render_stages, stage_values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEBUG_TOML = REPO / "train_configs" / "debug" / "curriculum.toml"


def test_printed_text_parses_back_to_each_stages_config(job):
    path = job.toml("""
        knowledge_insulation = true
        [curriculum.stages.optimizer]
        component_lr = { expert = 1e-4 }
        """)
    args = ["--curriculum.stages.pretrain.training.text_loss_weight=0.25", "--optimizer.eps=1e-6"]
    proc = run_train("--config", path, *args, "--print-config")
    assert proc.returncode == 0, proc.stderr
    printed = tomllib.loads(proc.stdout)
    _, stages = load_stages(path, [tuple(a[2:].split("=", 1)) for a in args])
    assert printed == stage_values(stages)
    # What the trainer is handed for each stage (its complete JobConfig) is what was printed.
    for stage, values in zip(stages, printed["stages"]):
        expected = config_to_dict(stage.config)
        expected["curriculum"].pop("stages")
        assert {k: values[k] for k in expected} == expected
        assert (values["name"], values["steps"]) == (stage.name, stage.config.training.steps)
    pre, co = printed["stages"]
    assert (pre["training"]["text_loss_weight"], co["training"]["text_loss_weight"]) == (0.25, 1.0)
    assert (pre["training"]["knowledge_insulation"], co["training"]["knowledge_insulation"]) == (False, True)
    assert co["optimizer"]["component_lr"] == {"expert": 1e-4} and pre["optimizer"]["eps"] == 1e-6
    assert co["data"]["sources"][1]["camera_keys"] == ["observation.images.top", "observation.images.wrist"]


def test_render_is_one_toml_document_per_stage_list(job):
    _, stages = load_stages(job.toml())
    text = render_stages(stages)
    assert "# stage 1/2: pretrain (3 steps)" in text and "# stage 2/2: cotrain (5 steps)" in text
    assert tomllib.loads(text) == stage_values(stages)


def _fake_toyworld(root: Path) -> None:
    """The folders the debug curriculum points at (relative to its working directory)."""
    data = root / "outputs" / "data" / "toyworld"
    for folder in ("web/captions", "web/documents"):
        (data / folder).mkdir(parents=True)
    (data / "tokenizer.json").write_text("{}")
    fake_lerobot(data / "robot", state_dim=2, action_dim=2, cameras=("observation.images.top",))


def test_debug_curriculum_prints_three_stages(tmp_path):
    _fake_toyworld(tmp_path)
    proc = run_train("--config", str(DEBUG_TOML), "--print-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stages = tomllib.loads(proc.stdout)["stages"]
    assert [s["name"] for s in stages] == ["vlm_pretrain", "cotrain", "finetune"]
    assert [s["training"]["trainable"] for s in stages] == [["vision", "decoder"], ["vision", "decoder", "expert"],
                                                            ["decoder", "expert"]]
    assert [s["optimizer"]["lr"] for s in stages] == [1e-3, 1e-3, 3e-4]
