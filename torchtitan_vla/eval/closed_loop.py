"""Closed-loop evaluation in the toy world: run a policy on held-out scenes and count how often it reaches
the named shape.

A policy is any callable ``policy(obs) -> actions`` on a batch of observations::

    obs = {"image": uint8 (N, S, S, 3), "state": float32 (N, 2), "instruction": list[str] (N)}
    actions: (N, H, >= 2) array or tensor of world-unit deltas (only the first two dims are used)

Each call returns an action chunk; the first ``execute_steps`` actions are executed before the policy is
asked again (receding horizon), for ``max_steps`` steps. An episode succeeds when the agent is at the named
shape at the end (see ``ToyWorld``).

Multi-step worlds (``WorldConfig.num_targets``) succeed when every target was reached in order; the
observation also carries each episode's true current subtask (``obs["subtask"]``), which
``from_inference_policy(..., true_subtask=True)`` hands to the policy (the hierarchy's upper bound).

Two baselines put a policy's number in context: ``ScriptedPolicy(world, "random_shape")`` goes straight to
a random shape, which is what a perfect instruction-blind policy can do (success ~ 1/num_shapes), and
``without_instruction(policy)`` runs a trained policy with the instruction removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from torchtitan_vla.envs.toyworld.demos import expert_chunk
from torchtitan_vla.envs.toyworld.generate import world_of
from torchtitan_vla.envs.toyworld.render import draw_agent, render_table
from torchtitan_vla.envs.toyworld.world import ToyWorld, WorldConfig
from torchtitan_vla.serve.key_map import SUBTASK_KEY
from torchtitan_vla.serve.rtc_keys import DELAY_KEY, PREV_ACTIONS_KEY

from .delay import EXECUTIONS, DelaySchedule, jump_stats, run_delayed

Policy = Callable[[dict], "np.ndarray"]


@dataclass
class ClosedLoopResult:
    episodes: int
    """Episodes run."""

    success_rate: float
    """Fraction of episodes whose agent is at the named shape after ``max_steps`` steps."""

    mean_steps: float
    """Mean steps until the agent first reached the named shape, over the successful episodes (NaN: none)."""

    mean_final_distance: float
    """Mean distance from the agent to its target at the end (0 would be dead centre)."""

    policy_calls: int
    """Times the policy was queried (each query covers all unfinished episodes)."""

    mean_jump: float = float("nan")
    """Mean distance between the last action of a chunk and the first executed action of the next (2-D)."""

    max_jump: float = float("nan")
    """Largest such jump over all switches and episodes."""

    visited_fraction: float = float("nan")
    """Mean fraction of each episode's targets reached in order (multi-step worlds; = success_rate with one)."""

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def observe(world: ToyWorld, tables: list[list[np.ndarray]]) -> dict:
    """The observation of every episode of ``world``: image with the agent, state, instruction and the true
    current subtask. ``tables[i][k]``: episode i's table with its first k targets visited."""
    images = np.stack([draw_agent(table[stage], xy) for table, stage, xy in zip(tables, world.stage, world.positions)])
    return {
        "image": images,
        "state": world.positions.copy(),
        "instruction": [scene.instruction for scene in world.scenes],
        "subtask": world.subtasks(),
    }


def _to_numpy(actions) -> np.ndarray:
    if hasattr(actions, "detach"):  # a torch tensor; eval needs no torch import otherwise
        actions = actions.detach().float().cpu().numpy()
    return np.asarray(actions, dtype=np.float32)


def run_closed_loop(policy: Policy, world: ToyWorld, max_steps: int = 40, execute_steps: int = 4,
                    schedule: DelaySchedule | None = None) -> ClosedLoopResult:
    """Run ``policy`` for ``max_steps`` steps on every episode of ``world`` (stepped in place) and score it.

    ``schedule``: a simulated inference delay and how chunks are executed meanwhile (``eval.delay``); the
    default (synchronous, no delay) asks the policy, executes ``execute_steps`` actions, asks again. With
    ``execution="rtc"`` the policy is called as ``policy(obs, prev_actions=..., inference_delay=d)``.
    """
    if max_steps < 1 or execute_steps < 1:
        raise ValueError(f"max_steps ({max_steps}) and execute_steps ({execute_steps}) must be >= 1")
    schedule = schedule or DelaySchedule()
    tables = [[render_table(scene, k) for k in range(len(scene.targets))] for scene in world.scenes]
    calls = 0
    step = 0

    def request(prev: np.ndarray | None, delay: int) -> np.ndarray:
        nonlocal calls
        obs = observe(world, tables)
        raw = policy(obs) if prev is None else policy(obs, prev_actions=prev, inference_delay=delay)
        actions = _to_numpy(raw)
        calls += 1
        if actions.ndim != 3 or actions.shape[0] != len(world) or actions.shape[2] < 2:
            raise ValueError(f"policy returned actions of shape {tuple(actions.shape)}; expected ({len(world)}, H, >=2)")
        return actions

    def advance(actions: np.ndarray) -> bool:
        nonlocal step
        world.step(actions[:, :2])
        step += 1
        return step >= max_steps

    jumps = run_delayed(request, advance, execute_steps, schedule, np.zeros((len(world), 2), np.float32))
    success = world.success
    return ClosedLoopResult(
        episodes=len(world),
        success_rate=float(success.mean()),
        mean_steps=float(world.reached_step[success].mean()) if success.any() else float("nan"),
        mean_final_distance=float(world.distances().mean()),
        policy_calls=calls,
        **jump_stats(jumps),
        visited_fraction=float(((world.stage + success) / world.config.num_targets).mean()),
    )


class ScriptedPolicy:
    """The expert with privileged access to the scenes of ``world``, heading for the instructed shape
    (``mode="instructed"``, the demonstrator) or for one random shape per episode (``mode="random_shape"``,
    the best any policy can do without reading the instruction)."""

    def __init__(self, world: ToyWorld, mode: str = "instructed", horizon: int = 8, seed: int = 0):
        if mode not in ("instructed", "random_shape"):
            raise ValueError(f"ScriptedPolicy mode {mode!r}; expected 'instructed' or 'random_shape'")
        rng = np.random.default_rng(seed)
        self.world = world if mode == "instructed" else None  # the current targets change as they are visited
        if mode == "random_shape":
            picks = [rng.integers(len(scene.shapes)) for scene in world.scenes]
            self.targets = np.array([scene.shapes[i].xy for scene, i in zip(world.scenes, picks)], dtype=np.float32)
        self.horizon = horizon
        self.max_speed = world.config.max_speed

    def __call__(self, obs: dict) -> np.ndarray:
        targets = self.world.targets if self.world is not None else self.targets
        return expert_chunk(obs["state"], targets, self.horizon, self.max_speed)


def from_inference_policy(
    policy, image_key: str = "observation/image", state_key: str = "observation/state", prompt_key: str = "prompt",
    true_subtask: bool = False,
) -> Policy:
    """A batched toy-world policy from an openpi-style one that answers ``infer(obs) -> {"actions": (H, A)}``
    per observation (``serve.Policy``, whose ``infer_batch`` takes them all at once, or a client of a policy
    server). The keys are the client keys the policy expects (its key map); the defaults are ``serve``'s.
    ``true_subtask``: each request also gives the episode's true current subtask (``serve.key_map.SUBTASK_KEY``)."""

    def act(obs: dict, prev_actions: np.ndarray | None = None, inference_delay: int = 0) -> np.ndarray:
        requests = []
        for i, (image, state, instruction) in enumerate(zip(obs["image"], obs["state"], obs["instruction"])):
            request = {image_key: image, state_key: state, prompt_key: instruction}
            if true_subtask:
                request[SUBTASK_KEY] = obs["subtask"][i]
            if prev_actions is not None:  # real-time chunking's optional keys (serve/rtc_keys.py)
                request.update({PREV_ACTIONS_KEY: prev_actions[i], DELAY_KEY: inference_delay})
            requests.append(request)
        # serve.Policy answers all episodes in one model call (the same noise draws, in the same order)
        answers = policy.infer_batch(requests) if hasattr(policy, "infer_batch") else map(policy.infer, requests)
        return np.stack([answer["actions"] for answer in answers])

    return act


def without_instruction(policy: Policy, placeholder: str = "") -> Policy:
    """``policy`` with every instruction replaced by ``placeholder``: what it does from the image alone."""

    def blind(obs: dict):
        return policy({**obs, "instruction": [placeholder] * len(obs["instruction"])})

    return blind


def evaluate(
    policy: Policy,
    num_episodes: int = 50,
    seed: int = 1234,
    max_steps: int = 40,
    execute_steps: int = 4,
    config: WorldConfig | None = None,
    baselines: bool = True,
    schedule: DelaySchedule | None = None,
) -> dict[str, float]:
    """Success of ``policy`` on ``num_episodes`` scenes drawn with ``seed``, and with ``baselines`` the same
    scenes under the random-shape policy and under ``policy`` without its instruction.

    Keys: ``success_rate``, ``mean_steps``, ... and, with baselines, ``random_shape/<key>`` and
    ``no_instruction/<key>``. ``schedule``: simulated inference delay and chunk execution of the
    policy's run (``eval.delay``; the baselines run synchronously without delay).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")

    def score(make_policy: Callable[[ToyWorld], Policy]) -> ClosedLoopResult:
        world = ToyWorld.from_seed(num_episodes, seed, config)  # every policy meets the same scenes
        return run_closed_loop(make_policy(world), world, max_steps, execute_steps)

    def score_policy(world: ToyWorld) -> ClosedLoopResult:
        schedule_copy = dataclasses.replace(schedule) if schedule else None  # same random delays per run
        return run_closed_loop(policy, world, max_steps, execute_steps, schedule_copy)

    metrics = score_policy(ToyWorld.from_seed(num_episodes, seed, config)).to_dict()
    if baselines:
        runs = {
            "random_shape": score(lambda world: ScriptedPolicy(world, "random_shape", seed=seed)),
            "no_instruction": score(lambda world: without_instruction(policy)),
        }
        for name, result in runs.items():
            metrics.update({f"{name}/{key}": value for key, value in result.to_dict().items()})
    return metrics


SUBTASK_MODES = ("auto", "predict", "none", "true")
"""How an exported policy gets its subtask: ``serve.Policy``'s modes, or ``true`` (given by the world)."""


def evaluate_export(folder: str, eval_cfg, device: str = "cpu", schedule: DelaySchedule | None = None,
                    subtask: str = "auto") -> dict[str, float]:
    """``evaluate`` the policy exported to ``folder`` (``serve.Policy.from_export``) with the settings of a
    ``config.Eval`` section (episodes, seed, steps, execute_steps, the world of its toyworld_data, baselines).
    ``subtask``: one of ``SUBTASK_MODES``."""
    import torch

    from torchtitan_vla.serve.policy import Policy as ExportedPolicy

    if subtask not in SUBTASK_MODES:
        raise ValueError(f"subtask mode {subtask!r}; expected one of {SUBTASK_MODES}")
    world = world_of(eval_cfg.toyworld_data) if eval_cfg.toyworld_data else None
    served = ExportedPolicy.from_export(folder, device=device, subtask="auto" if subtask == "true" else subtask)
    policy = from_inference_policy(served, true_subtask=subtask == "true")
    # The flow noise comes from torch's global generator: seeded, a policy scores the same in any process
    # (after training or from the command line) and every mode of a comparison draws the same noise.
    torch.manual_seed(eval_cfg.seed)
    metrics = evaluate(policy, eval_cfg.closed_loop_episodes, eval_cfg.seed, eval_cfg.max_episode_steps,
                       eval_cfg.execute_steps, world, baselines=eval_cfg.baselines, schedule=schedule)
    if served.decoding == "fast":  # pi0-FAST: how many chunks (baseline runs included) needed repair
        metrics.update(fast_decodes=served.fast_decodes, fast_decode_fallbacks=served.fast_fallbacks)
    return metrics


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    from torchtitan_vla.config.curriculum import Eval

    defaults = Eval()
    parser = argparse.ArgumentParser(description="Closed-loop success of an exported policy in the toy world.")
    parser.add_argument("--policy", help="exported policy folder; omit to score the scripted expert")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-steps", type=int, default=defaults.max_episode_steps)
    parser.add_argument("--execute-steps", type=int, default=defaults.execute_steps)
    parser.add_argument("--data", default="", help="generated toy-world data folder whose world to evaluate in")
    parser.add_argument("--no-baselines", action="store_true", help="skip the random-shape and no-instruction runs")
    parser.add_argument("--execution", choices=EXECUTIONS, default="sync",
                        help="chunk execution under the simulated delay (eval/delay.py)")
    parser.add_argument("--delay", type=int, default=0, help="simulated inference delay d in control steps")
    parser.add_argument("--max-delay", type=int, default=None, help="draw d uniformly from [--delay, --max-delay]")
    parser.add_argument("--subtask", choices=SUBTASK_MODES, default="auto",
                        help="the policy's subtask: predicted, none, given by the world (true) or auto (as trained)")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    args = parser.parse_args(argv)
    schedule = DelaySchedule(args.execution, args.delay, args.max_delay, args.seed)
    eval_cfg = Eval(closed_loop_episodes=args.episodes, seed=args.seed, max_episode_steps=args.max_steps,
                    execute_steps=args.execute_steps, toyworld_data=args.data, baselines=not args.no_baselines)
    if args.policy:
        metrics = evaluate_export(args.policy, eval_cfg, schedule=schedule, subtask=args.subtask)
    else:
        world = ToyWorld.from_seed(args.episodes, args.seed, world_of(args.data) if args.data else None)
        metrics = run_closed_loop(ScriptedPolicy(world), world, args.max_steps, args.execute_steps, schedule).to_dict()
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
