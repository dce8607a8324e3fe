"""LIBERO evaluation throughput: episodes per hour with 1 and 2 simulator workers, rendering both cameras at
every step vs only when the policy is asked (every ``--replan-steps``), through the harness itself.

    python scripts/bench_libero_eval.py --episodes 4 --max-steps 60 --output bench_libero_eval.json

The policy is the random-action baseline (no model: the simulator's cost alone) or the scripted controller
(``--policy scripted``). Random actions never succeed, so every episode runs ``--max-steps`` steps and the
configurations compare like for like. Two rates per configuration: over the whole run (worker start-up,
i.e. importing LIBERO and building the first environment, included) and steady state (after each worker's
first episode).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from torchtitan_vla.eval.libero.evaluate import Options, PolicySource, run
from torchtitan_vla.eval.libero.policies import RandomActions, ScriptedController

HORIZON = 10


def policy_source(kind: str) -> PolicySource:
    if kind == "scripted":
        from torchtitan_vla.envs.libero.scripted import PRIVILEGED_KEY

        return PolicySource({"policy": {"kind": "scripted"}, "checkpoint_hash": "bench"},
                            local_policy=ScriptedController(HORIZON), privileged_key=PRIVILEGED_KEY)
    return PolicySource({"policy": {"kind": "random_actions"}, "checkpoint_hash": "bench"},
                        local_policy=RandomActions(HORIZON))


def measure(args: argparse.Namespace, workers: int, every_step: bool, folder: Path) -> dict:
    options = Options(suite=args.suite, tasks=args.tasks, init_states=f"0-{args.episodes - 1}", workers=workers,
                      max_steps=args.max_steps, image_size=args.image_size, render_every_step=every_step,
                      output=str(folder), progress=False, replan_steps=args.replan_steps)
    start = time.time()
    document = run(options, lambda: policy_source(args.policy))
    wall = time.time() - start
    done = sorted(e["finished_at"] for e in document["episodes"])
    steady = (len(done) - workers) / (done[-1] - done[workers - 1]) * 3600 if len(done) > workers else None
    return {"workers": workers, "render": "every_step" if every_step else "replan_steps",
            "episodes": len(done), "steps": sum(e["steps"] for e in document["episodes"]),
            "wall_s": round(wall, 1), "episodes_per_hour": round(len(done) / wall * 3600, 1),
            "steady_episodes_per_hour": round(steady, 1) if steady else None,
            "mean_episode_s": round(sum(e["seconds"] for e in document["episodes"]) / len(done), 2),
            "success": document["suites"][args.suite]["success"]["standard"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--tasks", default="0")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per configuration")
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--replan-steps", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--policy", choices=("random", "scripted"), default="random")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            for every_step in (False, True):
                row = measure(args, workers, every_step, Path(tmp) / f"w{workers}_{int(every_step)}")
                rows.append(row)
                print(json.dumps(row), flush=True)
    base = rows[0]["episodes_per_hour"]
    for row in rows:
        row["ratio_to_first"] = round(row["episodes_per_hour"] / base, 2)
        print(f"{row['workers']} worker(s), render {row['render']:>12}: {row['episodes_per_hour']:7.1f} episodes/h "
              f"(steady {row['steady_episodes_per_hour']}), {row['mean_episode_s']} s/episode, x{row['ratio_to_first']}")
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": vars(args), "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
