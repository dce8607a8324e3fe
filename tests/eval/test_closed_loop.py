"""Closed-loop evaluation: a policy callable is run on held-out scenes and scored."""

import math

import numpy as np
import pytest

from torchtitan_vla.envs.toyworld import ToyWorld, WorldConfig, expert_chunk
from torchtitan_vla.eval.closed_loop import (
    ScriptedPolicy,
    evaluate,
    from_inference_policy,
    run_closed_loop,
    without_instruction,
)


def test_scripted_expert_always_succeeds():
    world = ToyWorld.from_seed(200, seed=11)
    result = run_closed_loop(ScriptedPolicy(world), world, max_steps=40, execute_steps=4)
    assert result.success_rate == 1.0
    assert 3 <= result.mean_steps <= 25
    assert result.policy_calls == 10


def test_random_shape_baseline_is_at_chance():
    world = ToyWorld.from_seed(600, seed=12)
    result = run_closed_loop(ScriptedPolicy(world, "random_shape", seed=0), world)
    chance = 1 / world.config.num_shapes
    assert abs(result.success_rate - chance) < 0.07, result


def test_evaluate_runs_a_policy_callable_and_reports_baselines():
    seen = []

    def policy(obs):
        seen.append(obs)
        n = len(obs["instruction"])
        return np.zeros((n, 8, 2), dtype=np.float32)  # stands still: never at the target

    metrics = evaluate(policy, num_episodes=5, seed=1, max_steps=12, execute_steps=4)
    first = seen[0]
    assert first["image"].shape == (5, 96, 96, 3) and first["image"].dtype == np.uint8
    assert first["state"].shape == (5, 2) and len(first["instruction"]) == 5
    assert all(text.startswith(("move", "go", "reach", "touch")) for text in first["instruction"])
    assert metrics["success_rate"] == 0.0 and math.isnan(metrics["mean_steps"])
    assert metrics["policy_calls"] == 3
    assert set(seen[-1]["instruction"]) == {""}, "the no-instruction baseline hides the instruction"
    assert 0.0 <= metrics["random_shape/success_rate"] <= 1.0
    assert metrics["no_instruction/success_rate"] == 0.0


def test_receding_horizon_executes_only_the_first_actions():
    world = ToyWorld.from_seed(3, seed=2)
    start = world.positions.copy()
    chunk = np.zeros((3, 8, 2), dtype=np.float32)
    chunk[:, :2, 0] = 0.05
    chunk[:, 2:, 0] = -1.0  # never executed with execute_steps=2
    run_closed_loop(lambda obs: chunk, world, max_steps=2, execute_steps=2)
    np.testing.assert_allclose(world.positions[:, 0], np.clip(start[:, 0] + 0.1, -1, 1), atol=1e-6)


def test_without_instruction_wraps_any_policy():
    calls = []
    blind = without_instruction(lambda obs: calls.append(obs["instruction"]) or "ok", placeholder="?")
    assert blind({"instruction": ["move to the red square"], "state": None}) == "ok"
    assert calls == [["?"]]


def test_bad_policy_output_and_arguments_are_rejected():
    world = ToyWorld.from_seed(2, seed=0)
    with pytest.raises(ValueError, match=r"policy returned actions of shape \(2, 2\)"):
        run_closed_loop(lambda obs: np.zeros((2, 2)), world)
    with pytest.raises(ValueError, match="execute_steps"):
        run_closed_loop(lambda obs: np.zeros((2, 8, 2)), world, execute_steps=0)
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate(lambda obs: None, num_episodes=0)


def test_evaluate_export_scores_an_exported_vla(tmp_path):
    from torchtitan_vla.config.curriculum import Eval
    from torchtitan_vla.envs.toyworld.generate import CAMERA_KEY
    from torchtitan_vla.eval.closed_loop import evaluate_export
    from torchtitan_vla.tools.debug_policy import export_debug_policy

    folder = export_debug_policy(tmp_path, [CAMERA_KEY], state_dim=2, action_dim=2, horizon=4, image_size=96)
    metrics = evaluate_export(str(folder), Eval(closed_loop_episodes=2, max_episode_steps=4, execute_steps=2))
    assert metrics["episodes"] == 2 and metrics["policy_calls"] == 2
    assert 0.0 <= metrics["success_rate"] <= 1.0 and "no_instruction/success_rate" in metrics


def test_evaluation_uses_the_world_of_the_training_data(tmp_path, monkeypatch):
    from torchtitan_vla.config.curriculum import Eval
    from torchtitan_vla.envs.toyworld.generate import CAMERA_KEY, GenerateConfig, generate
    from torchtitan_vla.eval import closed_loop
    from torchtitan_vla.tools.debug_policy import export_debug_policy

    world = WorldConfig(num_shapes=2, shared_attributes=True)
    generate(str(tmp_path / "data"), GenerateConfig(episodes=2, captions=2, documents=2, world=world))
    folder = export_debug_policy(tmp_path, [CAMERA_KEY], state_dim=2, action_dim=2, horizon=4, image_size=96)
    seen = []
    real_from_seed = closed_loop.ToyWorld.from_seed
    monkeypatch.setattr(closed_loop.ToyWorld, "from_seed",
                        lambda n, seed, config=None: seen.append(config) or real_from_seed(n, seed, config))
    closed_loop.evaluate_export(str(folder), Eval(closed_loop_episodes=2, max_episode_steps=2,
                                                  toyworld_data=str(tmp_path / "data")))
    assert seen and all(config == world for config in seen)


def test_multi_step_success_needs_every_target_in_order():
    config = WorldConfig(num_targets=2)
    world = ToyWorld.from_seed(100, seed=11, config=config)
    result = run_closed_loop(ScriptedPolicy(world), world, max_steps=60, execute_steps=4)
    assert result.success_rate == 1.0 and result.visited_fraction == 1.0
    world = ToyWorld.from_seed(100, seed=11, config=config)
    last = np.array([s.shapes[s.then[-1]].xy for s in world.scenes], dtype=np.float32)
    straight_to_the_last = run_closed_loop(lambda obs: expert_chunk(obs["state"], last, 8, 0.12), world, max_steps=60)
    assert straight_to_the_last.success_rate < 0.2  # only where the first target lies on the way


def test_true_subtask_mode_hands_the_world_subtask_to_the_policy():
    requests = []

    class Served:
        def infer(self, request):
            requests.append(request)
            return {"actions": np.zeros((8, 2), np.float32)}

    world = ToyWorld.from_seed(2, seed=3, config=WorldConfig(num_targets=2))
    run_closed_loop(from_inference_policy(Served(), true_subtask=True), world, max_steps=4, execute_steps=4)
    assert [r["subtask"] for r in requests] == [s.subtask(0) for s in world.scenes]
    run_closed_loop(from_inference_policy(Served()), world, max_steps=4, execute_steps=4)
    assert "subtask" not in requests[-1]  # the default requests are what openpi clients send
