"""Issue #21 point 4, the acceptance list: every value that cannot work is refused when the configuration
loads, in TOML and on the command line alike: one ``error:`` line, exit 2, nothing built or written."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REPO, assert_refused

_spec = importlib.util.spec_from_file_location("train_entry", REPO / "train.py")
train_entry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_entry)

# (case, TOML edit: (text of the base job to replace, replacement) or a table appended at the end,
#  command-line overrides, fragment of the error line)
CASES = [
    ("batch size 0", ("[training]\n", "[training]\nlocal_batch_size = 0\n"), ["--training.local_batch_size=0"],
     "local_batch_size' must be >= 1"),
    ("negative batch size", ("[training]\n", "[training]\nlocal_batch_size = -2\n"), ["--training.local_batch_size=-2"],
     "local_batch_size' must be >= 1"),
    ("negative lr", "[optimizer]\nlr = -1e-3", ["--optimizer.lr=-1e-3"], "lr' must be >= 0"),
    ("beta2 1.5", "[optimizer]\nbeta2 = 1.5", ["--optimizer.beta2=1.5"], "beta2' must be in [0, 1)"),
    ("checkpoint interval 0", "[checkpoint]\ninterval = 0", ["--checkpoint.interval=0"], "interval' must be >= 1"),
    ("num_workers -1", ("[data]\n", "[data]\nnum_workers = -1\n"), ["--data.num_workers=-1"], "num_workers' must be >= 0"),
    ("log_freq 0", "[metrics]\nlog_freq = 0", ["--metrics.log_freq=0"], "log_freq' must be >= 1"),
    ("stage steps 0", ("steps = 5", "steps = 0"), ["--curriculum.stages.cotrain.steps=0"], "steps' must be >= 1"),
    ("stage steps -3", ("steps = 5", "steps = -3"), ["--curriculum.stages.cotrain.steps=-3"], "steps' must be >= 1"),
    ("training.steps 0", ("[training]\n", "[training]\nsteps = 0\n"), ["--training.steps=0"], "steps' must be >= 1"),
    ("negative mixture weight", ("robot = 0.8", "robot = -0.8"),
     ["--curriculum.stages.cotrain.data.mixture={ robot = -0.8, web = 0.2 }"], "robot' must be >= 0"),
    ("negative warmup", "[lr_schedule]\nwarmup_steps = -5", ["--lr_schedule.warmup_steps=-5"],
     "warmup_steps' must be >= 0"),
    ("missing eval.toyworld_data", "[eval]\nclosed_loop_episodes = 5\ntoyworld_data = \"/no/world\"",
     ["--eval.closed_loop_episodes=5", "--eval.toyworld_data=/no/world"], "'eval.toyworld_data' = '/no/world' does not exist"),
]


def _refused(job, capsys, argv: list[str], *fragments: str) -> str:
    dump = job.root / "runs"
    rc = train_entry.main([*argv, f"--job.dump_folder={dump}"])
    err = capsys.readouterr().err

    class Proc:  # what assert_refused reads
        returncode, stderr, stdout = rc, err, ""

    line = assert_refused(Proc, *fragments)
    assert not dump.exists(), "something was built before the configuration was refused"
    return line


def _edited(job, edit) -> str:
    path = job.toml()
    text = open(path).read()
    if isinstance(edit, tuple):
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    else:
        text += "\n" + edit + "\n"
    open(path, "w").write(text)
    return path


@pytest.mark.parametrize("case, edit, cli, fragment", CASES, ids=[c[0] for c in CASES])
def test_refused_in_toml(job, capsys, case, edit, cli, fragment):
    path = _edited(job, edit)
    _refused(job, capsys, ["--config", path], fragment, path)


@pytest.mark.parametrize("case, edit, cli, fragment", CASES, ids=[c[0] for c in CASES])
def test_refused_on_the_command_line(job, capsys, case, edit, cli, fragment):
    _refused(job, capsys, ["--config", job.toml(), *cli], fragment, "command line" if "eval" not in case else "")


def test_missing_dataset_of_a_later_stage_is_refused_before_the_first_stage(job, capsys):
    # The robot source is read only by stage 2; the first stage's check already names it.
    _refused(job, capsys, ["--config", job.toml(robot=str(job.root / "no_robot"))],
             f"'data.sources[1].path' = '{job.root / 'no_robot'}' does not exist (source 'robot')")
