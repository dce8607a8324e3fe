"""``--print-config`` is the truth: for every stage, the objects the trainer builds equal what is printed."""

from __future__ import annotations

import dataclasses

import pytest
import tomllib

from tests.train.helpers import CONFIG
from tests.train.standin import standin_spec
from torchtitan_vla.config import load_config, parse_command_line, resolve_stages
from torchtitan_vla.config.printing import render_stages
from torchtitan_vla.train.trainer import Trainer

OVERRIDES = [
    "--curriculum.stages.cotrain.training.knowledge_insulation=true",
    "--curriculum.stages.cotrain.training.ema_decay=0.9",
    "--curriculum.stages.finetune.optimizer.component_lr={ expert = 5e-4 }",
    "--curriculum.stages.finetune.training.flow_time_beta=2.0",
    "--curriculum.stages.finetune.lr_schedule.kind=constant",
]


@pytest.fixture()
def printed_and_trainer(tmp_path):
    cli = parse_command_line(["--config", str(CONFIG), f"--job.dump_folder={tmp_path}", *OVERRIDES])
    loaded = load_config(cli.config_path, cli.overrides)
    stages = resolve_stages(loaded)
    printed = tomllib.loads(render_stages(stages))["stages"]
    trainer = Trainer(loaded, stages, standin_spec())
    yield printed, trainer
    trainer.close()


def test_every_stage_runs_with_what_print_config_shows(printed_and_trainer):
    printed, trainer = printed_and_trainer
    assert [p["name"] for p in printed] == [plan.stage.name for plan in trainer.plans]
    for shown, plan in zip(printed, trainer.plans):
        trainer.begin_stage(plan)
        training, optimizer = shown["training"], shown["optimizer"]
        assert plan.stage.steps == shown["steps"]

        trains = {name for name, part in trainer.components.items() if any(p.requires_grad for p in part.parameters())}
        assert trains == set(training["trainable"])
        for group in trainer.optimizer.param_groups:
            component = group["name"].split(".")[0]
            assert group["peak_lr"] == optimizer["component_lr"].get(component, optimizer["lr"])
            if not group["name"].endswith("no_decay"):
                assert group["weight_decay"] == optimizer["weight_decay"]
        assert trainer.optimizer.defaults["betas"] == (optimizer["beta1"], optimizer["beta2"])
        assert dataclasses.asdict(trainer.scheduler.cfg) == shown["lr_schedule"]
        assert trainer.scheduler.total_steps == shown["steps"]

        assert trainer.dataloader.source_names == [n for n, w in shown["data"]["mixture"].items() if w > 0]
        assert trainer.dataloader.batch_size == training["local_batch_size"]
        assert trainer.options.knowledge_insulation == training["knowledge_insulation"]
        flow = trainer.options.flow_time
        assert (flow.alpha, flow.beta, flow.scale, flow.offset) == (
            training["flow_time_alpha"], training["flow_time_beta"], training["flow_time_scale"],
            training["flow_time_offset"])
        assert (trainer.weights.text, trainer.weights.action) == (training["text_loss_weight"],
                                                                  training["action_loss_weight"])
        assert (trainer.ema.decay if trainer.ema else 0.0) == training["ema_decay"]

        # Job-level sections are the same in every stage and are what the job was built with.
        assert shown["checkpoint"]["folder"] == trainer.checkpointer.folder.name
        assert shown["action_expert"] == printed[0]["action_expert"]
        assert shown["model"] == printed[0]["model"]
