"""Real-time execution in the toy world or Meta-World: closed-loop success and action jumps at chunk
switches for synchronous, naive asynchronous and real-time-chunked execution under a simulated inference
delay, and the per-chunk latency of each request kind measured in the same run.

    python scripts/bench_realtime.py --policy EXPORT [--rtc-trained-policy EXPORT2] --data outputs/data/toyworld
    MUJOCO_GL=osmesa python scripts/bench_realtime.py --env metaworld --tasks reach-v3,drawer-close-v3 \
        --policy EXPORT --rtc-trained-policy EXPORT2 --episodes 3 --max-steps 150

Every (policy, delay, execution) cell runs the same ``--episodes`` held-out scenes (``--seed``; on
Meta-World ``--episodes`` held-out layouts per task, seed 10000 as ``eval.metaworld``).
``EXPORT`` is scored with ``sync``, ``naive`` and ``rtc`` (inference-time RTC: guidance); an export trained
with ``training.rtc_max_delay`` > 0 (``--rtc-trained-policy``) is scored with ``rtc``, which it answers
by prefix conditioning (training-time RTC). Latency: ``Policy.infer`` milliseconds per chunk (p50) of
plain requests and of requests carrying a previous chunk, collected while the cells run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from torchtitan_vla.envs.toyworld.generate import world_of
from torchtitan_vla.eval.closed_loop import evaluate, from_inference_policy
from torchtitan_vla.eval.delay import DelaySchedule
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.rtc_keys import PREV_ACTIONS_KEY


class TimedPolicy:
    """``Policy.infer`` with its wall time recorded per request kind (plain / with a previous chunk)."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.ms: dict[str, list[float]] = {"plain": [], "rtc": []}

    def infer(self, obs: dict) -> dict:
        start = time.perf_counter()
        result = self.policy.infer(obs)
        self.ms["rtc" if obs.get(PREV_ACTIONS_KEY) is not None else "plain"].append((time.perf_counter() - start) * 1000)
        return result


def toyworld_cell(policy: TimedPolicy, args, schedule: DelaySchedule) -> dict:
    world = world_of(args.data) if args.data else None
    metrics = evaluate(from_inference_policy(policy), args.episodes, args.seed, args.max_steps, args.execute_steps,
                       world, baselines=False, schedule=schedule)
    return {key: metrics[key] for key in ("success_rate", "mean_jump", "max_jump")}


def metaworld_cell(policy: TimedPolicy, args, schedule: DelaySchedule) -> dict:
    from torchtitan_vla.eval import metaworld

    report = metaworld.evaluate(policy, args.tasks, args.episodes, args.max_steps, args.execute_steps,
                                args.image_size, schedule=schedule)
    return {"success_rate": report.mean_success, "mean_jump": report.mean_jump, "max_jump": report.max_jump,
            "per_task": report.success}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="exported policy (inference-time RTC rows)")
    p.add_argument("--rtc-trained-policy", help="export fine-tuned with training-time RTC")
    p.add_argument("--env", default="toyworld", choices=["toyworld", "metaworld"])
    p.add_argument("--data", default="", help="toy-world data folder whose world to evaluate in")
    p.add_argument("--tasks", default="reach-v3", help="Meta-World: 'mt10' or comma-separated v3 task names")
    p.add_argument("--image-size", type=int, default=128, help="Meta-World camera pixels")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--execute-steps", type=int, default=4)
    p.add_argument("--delays", type=int, nargs="+", default=[0, 2, 4])
    p.add_argument("--output", default="outputs/bench_realtime.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # per-task progress on Meta-World

    cell = metaworld_cell if args.env == "metaworld" else toyworld_cell
    policies = {"inference-time": TimedPolicy(Policy.from_export(args.policy))}
    # The asynchronous cells first (naive, then both RTC variants), synchronous last: what a run cut short
    # by a time limit has already printed is the comparison that matters.
    cells = [("inference-time", "naive"), ("inference-time", "rtc")]
    if args.rtc_trained_policy:
        policies["training-time"] = TimedPolicy(Policy.from_export(args.rtc_trained_policy))
        cells.append(("training-time", "rtc"))
    cells.append(("inference-time", "sync"))
    rows = []
    for delay in args.delays:
        for label, execution in cells:
            start = time.perf_counter()
            metrics = cell(policies[label], args, DelaySchedule(execution, delay, seed=args.seed))
            row = {"policy": label, "execution": execution, "delay": delay, **metrics,
                   "mean_jump": round(metrics["mean_jump"], 4), "max_jump": round(metrics["max_jump"], 4),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    latency = {}
    for label, timed in policies.items():
        latency[label] = {f"{kind}_p50_ms": round(statistics.median(ms), 2) for kind, ms in timed.ms.items() if ms}
        latency[label].update({f"{kind}_calls": len(ms) for kind, ms in timed.ms.items()})
    result = {"env": args.env, "tasks": args.tasks if args.env == "metaworld" else None,
              "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps,
              "execute_steps": args.execute_steps, "rows": rows, "latency": latency}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(latency, indent=2))


if __name__ == "__main__":
    main()
