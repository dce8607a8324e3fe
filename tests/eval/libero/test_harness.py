"""The harness on the fake environment: worker processes, batched policy calls, diagnostics, results files,
and a stopped run that keeps its finished episodes."""

import json

import pytest

from tests.eval.libero.helpers import GoalSeeker, LocalGoalSeeker, run_fake, source
from torchtitan_vla.eval.libero.evaluate import EvaluationStopped, run
from torchtitan_vla.eval.libero.policies import PolicyMismatch
from torchtitan_vla.eval.libero.results import EPISODES_FILE

from .helpers import fake_options


def test_two_workers_batch_their_observations_and_diagnostics_show_the_instruction(tmp_path):
    policy = GoalSeeker()
    document = run_fake(tmp_path, policy, workers=2, tasks="0,1", diagnostics=("blank", "other", "perturbed"),
                        batch_wait_ms=5000)
    # 2 tasks x 4 init states x 4 variants, every one recorded once.
    assert document["complete"] and len(document["episodes"]) == 32
    assert len({(e["suite"], e["task_id"], e["init_state"], e["variant"]) for e in document["episodes"]}) == 32
    # Two simulators ask at the same control step: the main process answers both in one call.
    assert max(policy.batch_sizes) == 2 and sum(policy.batch_sizes) == sum(e["policy_calls"] for e in document["episodes"])
    suite = document["suites"]["fake_object"]["success"]
    # It reads the instruction (blank or another task's: fails) and the scene (moved start: succeeds).
    assert suite == {"standard": 1.0, "blank_instruction": 0.0, "other_instruction": 0.0, "fake_object_swap": 1.0}
    task = document["tasks"][0]
    assert task["language"] == "move to target 0" and task["episodes"]["standard"] == 4
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["suites"] == document["suites"] and "| fake_object | 2 | 32 |" in (tmp_path / "results.md").read_text()


def test_local_policy_runs_in_the_workers(tmp_path):
    document = run_fake(tmp_path, local=LocalGoalSeeker(), workers=2, tasks="2")
    assert document["suites"]["fake_object"]["success"] == {"standard": 1.0}


def test_rerun_skips_finished_episodes_and_other_settings_are_refused(tmp_path):
    first = GoalSeeker()
    run_fake(tmp_path, first, tasks="0")
    again = GoalSeeker()
    document = run_fake(tmp_path, again, tasks="0")
    assert again.batch_sizes == [] and len(document["episodes"]) == 4  # nothing redone
    with pytest.raises(ValueError, match=r"episodes.jsonl was written with different settings \(init_states"):
        run_fake(tmp_path, GoalSeeker(), tasks="0", init_states="0-9")


def test_cut_log_line_is_dropped_and_rerun(tmp_path):
    run_fake(tmp_path, GoalSeeker(), tasks="0")
    log = tmp_path / EPISODES_FILE
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][:20])  # killed halfway through writing the last episode
    policy = GoalSeeker()
    document = run_fake(tmp_path, policy, tasks="0")
    assert len(document["episodes"]) == 4 and len(policy.batch_sizes) == 2  # only the cut episode ran again
    assert all(json.loads(line) for line in log.read_text().splitlines())


def test_simulator_failure_stops_the_run_keeping_finished_episodes(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ENV_CRASH_INIT_STATE", "2")
    with pytest.raises(EvaluationStopped) as stopped:
        run_fake(tmp_path, GoalSeeker(), tasks="0")
    message = str(stopped.value)
    assert "fake_object task 0 init state 2: RuntimeError: simulator exploded" in message
    assert "the 2 finished episodes are kept in" in message and stopped.value.exit_code == 1
    document = json.loads((tmp_path / "results.json").read_text())
    assert not document["complete"] and [e["init_state"] for e in document["episodes"]] == [0, 1]


def test_missing_init_state_is_bad_input(tmp_path):
    with pytest.raises(EvaluationStopped, match="init state 50 is not in fake_object task 0") as stopped:
        run_fake(tmp_path, GoalSeeker(), tasks="0", init_states="49-50")
    assert stopped.value.exit_code == 2


@pytest.mark.parametrize("bad, message", [
    (dict(suite="fake_nope"), "unknown LIBERO suite 'fake_nope'; valid: fake_object, fake_goal or all"),
    (dict(tasks="3"), r"task id 3 is not in fake_object \(3 tasks: 0-2\)"),
    (dict(init_states="4-2"), "--init-states '4-2'"),
    (dict(delay=6), "delay 6 exceeds execute_steps 5"),
])
def test_bad_input_is_named_before_the_policy_or_a_simulator_starts(tmp_path, bad, message):
    def open_policy():
        raise AssertionError("the policy must not be opened for bad input")

    with pytest.raises(ValueError, match=message):
        run(fake_options(tmp_path / "out", **bad), open_policy)
    assert not (tmp_path / "out").exists()


def test_policy_mismatch_is_named_before_any_simulator_starts(tmp_path):
    def open_policy():
        raise PolicyMismatch("checkpoint X has action_dim 14; LIBERO's actions are 7-D")

    with pytest.raises(PolicyMismatch, match="action_dim 14"):
        run(fake_options(tmp_path / "out"), open_policy)
    assert not (tmp_path / "out").exists()


def test_provenance_is_recorded(tmp_path):
    document = run(fake_options(tmp_path, init_states="40,45", max_steps=12), lambda: source(GoalSeeker()))
    provenance = document["provenance"]
    assert provenance["checkpoint_hash"] == "sha256:test" and provenance["init_states"] == [40, 45]
    assert provenance["trials_per_task"] == 2 and provenance["max_steps"] == {"fake_object": 12}
    assert provenance["replan_steps"] == 5 and provenance["num_wait_steps"] == 3 and provenance["image_size"] == 256
    assert provenance["seeds"] == {"env": 7, "episode": 7} and provenance["versions"]["fake-libero"] == "0.0"
    assert provenance["delay"] == {"execution": "sync", "delay": 0, "max_delay": None}
