"""Closed-loop evaluation of a policy on Meta-World v3 (the environment: ``torchtitan_vla.envs.metaworld``),
and the command line for demonstrations and evaluation.

    python -m torchtitan_vla.eval.metaworld generate --out DIR [--tasks mt10] [--episodes 10]
    python -m torchtitan_vla.eval.metaworld scripted [--tasks mt10] [--episodes 50]
    python -m torchtitan_vla.eval.metaworld evaluate --checkpoint EXPORT_DIR | --server ws://HOST:PORT
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from torchtitan_vla.envs.metaworld import (
    ACTION_DIM,
    DEMO_SEED,
    EVAL_SEED,
    IMAGE_KEY,
    PROMPT_KEY,
    STATE_KEY,
    TaskEnv,
    check_episode_length,
    generate_demonstrations,
    instruction,
    resolve_tasks,
    scripted_success,
    state_of,
)
from torchtitan_vla.serve.rtc_keys import DELAY_KEY, PREV_ACTIONS_KEY

from .delay import EXECUTIONS, DelaySchedule, jump_stats, run_delayed

logger = logging.getLogger(__name__)


class ChunkPolicy(Protocol):
    """``torchtitan_vla.serve.Policy`` in-process, or ``openpi_client``'s ``WebsocketClientPolicy``."""

    def infer(self, obs: dict) -> dict: ...


@dataclass
class EvalReport:
    success: dict[str, float]
    """Per task: fraction of episodes that reached Meta-World's success condition."""

    mean_success: float
    """Mean of the per-task success rates."""

    episodes_per_task: int
    """Episodes run per task."""

    seconds: float
    """Wall-clock time of the evaluation."""

    mean_jump: float = float("nan")
    """Mean distance (4-d action space) between the last action of a chunk and the first executed action
    of the next, over every chunk switch of every episode (``eval.delay``)."""

    max_jump: float = float("nan")
    """Largest such jump."""


def run_episode(policy: ChunkPolicy, env: TaskEnv, layout: int, max_steps: int, replan_steps: int,
                schedule: DelaySchedule | None = None) -> tuple[bool, list[np.ndarray]]:
    """One closed-loop episode: query a chunk, execute its first ``replan_steps`` actions, repeat; with a
    ``schedule``, under a simulated inference delay (``eval.delay``; the arm holds still while it waits).
    -> (success, the jump at every chunk switch)."""
    obs = env.reset(layout)
    steps = 0
    success = False

    def request(prev: np.ndarray | None, delay: int) -> np.ndarray:
        message = {IMAGE_KEY: env.render(), STATE_KEY: state_of(obs), PROMPT_KEY: instruction(env.task)}
        if prev is not None:
            message.update({PREV_ACTIONS_KEY: prev[0], DELAY_KEY: delay})
        chunk = np.asarray(policy.infer(message)["actions"])
        if chunk.ndim != 2 or chunk.shape[1] < ACTION_DIM:
            raise ValueError(f"policy returned actions of shape {chunk.shape}; expected (H, >= {ACTION_DIM})")
        return chunk[None]

    def step(action: np.ndarray) -> bool:
        nonlocal obs, steps, success
        obs, success = env.step(action[0, :ACTION_DIM])
        steps += 1
        return success or steps >= max_steps

    jumps = run_delayed(request, step, replan_steps, schedule or DelaySchedule(), np.zeros((1, ACTION_DIM), np.float32))
    return bool(success), jumps


def evaluate(
    policy: ChunkPolicy,
    tasks: str | list[str] = "mt10",
    episodes_per_task: int = 10,
    max_steps: int = 200,
    replan_steps: int = 4,
    image_size: int = 128,
    seed: int = EVAL_SEED,
    schedule: DelaySchedule | None = None,
) -> EvalReport:
    """Closed-loop success of ``policy`` on held-out layouts of each task."""
    if episodes_per_task < 1 or max_steps < 1 or replan_steps < 1:
        raise ValueError("episodes_per_task, max_steps and replan_steps must all be >= 1")
    check_episode_length(max_steps)
    start = time.perf_counter()
    success, jumps = {}, []
    for task in resolve_tasks(tasks):
        env = TaskEnv(task, seed, image_size)
        wins = 0
        for layout in range(episodes_per_task):
            won, episode_jumps = run_episode(policy, env, layout, max_steps, replan_steps, schedule)
            wins += won
            jumps += episode_jumps
        env.close()
        success[task] = wins / episodes_per_task
        logger.info("%s: %d/%d", task, wins, episodes_per_task)
    mean = float(np.mean(list(success.values())))
    return EvalReport(success, mean, episodes_per_task, time.perf_counter() - start, **jump_stats(jumps))


def _connect(server: str, api_key: str | None) -> ChunkPolicy:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    return WebsocketClientPolicy(host=server, api_key=api_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.eval.metaworld", description="Meta-World v3: scripted demonstrations and closed-loop evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write scripted demonstrations as a LeRobot v3.0 dataset")
    gen.add_argument("--out", required=True, help="dataset root to write")
    gen.add_argument("--tasks", default="mt10", help="'mt10' or comma-separated v3 task names")
    gen.add_argument("--episodes", type=int, default=10, help="episodes per task")
    gen.add_argument("--image-size", type=int, default=128)
    gen.add_argument("--max-steps", type=int, default=300)
    gen.add_argument("--seed", type=int, default=DEMO_SEED)
    scr = sub.add_parser("scripted", help="success rate of the scripted policies (no rendering, fast)")
    scr.add_argument("--tasks", default="mt10")
    scr.add_argument("--episodes", type=int, default=50, help="episodes per task")
    scr.add_argument("--max-steps", type=int, default=300)
    scr.add_argument("--seed", type=int, default=DEMO_SEED)
    ev = sub.add_parser("evaluate", help="closed-loop success of an exported policy or a policy server")
    where = ev.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", help="exported policy folder, run in-process")
    where.add_argument("--server", help="policy server address, e.g. ws://127.0.0.1:8000")
    ev.add_argument("--api-key", default=None)
    ev.add_argument("--tasks", default="mt10")
    ev.add_argument("--episodes", type=int, default=10, help="episodes per task")
    ev.add_argument("--max-steps", type=int, default=200)
    ev.add_argument("--replan-steps", type=int, default=4, help="actions executed from each chunk")
    ev.add_argument("--image-size", type=int, default=128)
    ev.add_argument("--seed", type=int, default=EVAL_SEED)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--execution", choices=EXECUTIONS, default="sync", help="chunk execution (eval/delay.py)")
    ev.add_argument("--delay", type=int, default=0, help="simulated inference delay d in control steps")
    ev.add_argument("--max-delay", type=int, default=None, help="draw d uniformly from [--delay, --max-delay]")
    ev.add_argument("--output", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if "MUJOCO_GL" not in os.environ:
        logger.warning("MUJOCO_GL is not set; use MUJOCO_GL=osmesa (CPU) or MUJOCO_GL=egl (GPU) for offscreen rendering")

    if args.command == "generate":
        report = asdict(
            generate_demonstrations(args.out, args.tasks, args.episodes, args.image_size, args.max_steps, args.seed)
        )
    elif args.command == "scripted":
        rates = scripted_success(args.tasks, args.episodes, args.max_steps, args.seed)
        report = {"success": rates, "mean_success": float(np.mean(list(rates.values()))), "episodes_per_task": args.episodes}
    else:
        if args.checkpoint:
            from torchtitan_vla.serve.policy import Policy

            policy = Policy.from_export(args.checkpoint, device=args.device)
        else:
            policy = _connect(args.server, args.api_key)
        report = asdict(
            evaluate(policy, args.tasks, args.episodes, args.max_steps, args.replan_steps, args.image_size, args.seed,
                     DelaySchedule(args.execution, args.delay, args.max_delay, args.seed))
        )
        if args.output:
            with open(args.output, "w") as f:
                json.dump(report, f, indent=2)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
