"""Stages override stage-level sections only; every stage is checked at load, before anything trains."""

from __future__ import annotations

import pytest
from conftest import assert_refused, run_train

from torchtitan_vla.config import STAGE_SECTIONS, load_stages

JOB_LEVEL_CASES = [
    ("action_expert", "knowledge_insulation", "true"),
    ("action_expert", "action_horizon", "8"),
    ("model", "flavor", '"2B"'),
    ("parallelism", "data_parallel_shard_degree", "2"),
    ("checkpoint", "folder", '"elsewhere"'),
]
WHY = "is job-level (built once for the whole job); a stage may override only data, optimizer, lr_schedule, training"


def test_stage_sections_are_the_four_stage_level_ones():
    assert STAGE_SECTIONS == ("data", "optimizer", "lr_schedule", "training")


@pytest.mark.parametrize("section, key, value", JOB_LEVEL_CASES)
def test_stage_table_of_a_job_level_section_is_refused_in_toml(job, section, key, value):
    path = job.toml(f"[curriculum.stages.{section}]\n{key} = {value}\n")
    assert_refused(run_train("--config", path, "--print-config"),
                   path, "stage 'cotrain'", f"'curriculum.stages[1].{section}.{key}'", f"{section} {WHY}")


@pytest.mark.parametrize("section, key, value", JOB_LEVEL_CASES)
def test_stage_override_of_a_job_level_section_is_refused_on_the_command_line(job, section, key, value):
    arg = f"--curriculum.stages.cotrain.{section}.{key}={value.strip(chr(34))}"
    assert_refused(run_train("--config", job.toml(), arg, "--print-config"),
                   "command line", "stage 'cotrain'", f"'curriculum.stages.cotrain.{section}.{key}'", f"{section} {WHY}")


@pytest.mark.parametrize(
    "old, new, cli, fragments",
    [
        ('trainable = ["vision", "decoder", "expert"]', 'trainable = ["vision", "expret"]',
         "--curriculum.stages.cotrain.training.trainable=vision,expret",
         ["training.trainable[1]'", "did you mean 'expert'?"]),
        ("mixture = { robot = 0.8, web = 0.2 }", "mixture = { nosuchsource = 1.0 }",
         "--curriculum.stages.cotrain.data.mixture={ nosuchsource = 1.0 }",
         ["stage 'cotrain'", "'data.mixture.nosuchsource' names source 'nosuchsource', not one of ['web', 'robot']"]),
        ("[curriculum.stages.training]", "[curriculum.stages.optimizer]\ncomponent_lr = { visoin = 1e-5 }\n[curriculum.stages.training]",
         "--curriculum.stages.cotrain.optimizer.component_lr={ visoin = 1e-5 }",
         ["optimizer.component_lr.visoin'", "did you mean 'vision'?"]),
        ("mixture = { robot = 0.8, web = 0.2 }", "mixture = { robto = 1.0 }", "--curriculum.stages.cotrain.data.mixture={ robto = 1.0 }",
         ["did you mean 'robot'?"]),
    ],
    ids=["trainable", "mixture", "component_lr", "mixture-close"],
)
def test_typo_in_a_later_stage_fails_at_load(job, old, new, cli, fragments):
    path = job.toml()
    text = open(path).read()
    assert text.count(old) == 1
    open(path, "w").write(text.replace(old, new))
    assert_refused(run_train("--config", path, "--print-config"), path, *fragments)
    assert_refused(run_train("--config", job.toml(), cli, "--print-config"), *fragments)


def test_stage_overrides_apply_per_stage(job):
    path = job.toml("""
        knowledge_insulation = true
        flow_time_alpha = 2.0
        [curriculum.stages.optimizer]
        lr = 1e-5
        component_lr = { expert = 1e-4 }
        [curriculum.stages.lr_schedule]
        kind = "constant"
        """)
    _, (pre, co) = load_stages(path, [("curriculum.stages.pretrain.training.max_norm", "0.5")])
    assert (pre.config.training.knowledge_insulation, co.config.training.knowledge_insulation) == (False, True)
    assert (pre.config.training.flow_time_alpha, co.config.training.flow_time_alpha) == (1.5, 2.0)
    assert (pre.config.optimizer.lr, co.config.optimizer.lr) == (3e-4, 1e-5)
    assert co.config.optimizer.component_lr == {"expert": 1e-4} and pre.config.optimizer.component_lr == {}
    assert (pre.config.lr_schedule.kind, co.config.lr_schedule.kind) == ("cosine", "constant")
    assert pre.config.data.mixture == {"web": 1.0} and co.config.data.mixture == {"robot": 0.8, "web": 0.2}
    assert (pre.config.training.trainable, co.config.training.trainable) == (["vision", "decoder"], ["vision", "decoder", "expert"])
    assert (pre.config.training.max_norm, co.config.training.max_norm) == (0.5, 1.0)
    # Job-level sections are the base's in every stage.
    for section in ("model", "action_expert", "parallelism", "checkpoint", "metrics", "eval", "debug"):
        assert getattr(pre.config, section) == getattr(co.config, section)


def test_unknown_stage_table_names_the_closest_stage_level_section(job):
    path = job.toml("[curriculum.stages.trainig]\nsteps = 1\n")
    assert_refused(run_train("--config", path, "--print-config"),
                   "unknown key 'curriculum.stages[1].trainig'; did you mean 'curriculum.stages[1].training'?")


def test_the_real_process_prints_one_line_and_exits_2(job):
    """The command line as a user runs it (the other tests call ``train.main`` in this process)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    path = job.toml("[curriculum.stages.model]\nflavor = \"2B\"\n")
    for args in (["--config", path], ["--config", job.toml(), "--activation_checkpoint.components=[\"decodr\"]"]):
        proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        assert_refused(proc)
