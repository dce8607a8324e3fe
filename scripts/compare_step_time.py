"""Step time of one training config in two checkouts of this repository, alternated in one sitting.

    python scripts/compare_step_time.py --before /path/to/old/checkout --after . \
        --config train_configs/debug/curriculum.toml --stage cotrain --steps 120 --repeats 3 \
        --out outputs/step_time.json [--set key=value ...]

Each run trains ``--steps`` steps of one stage (``curriculum.only_stage``) without checkpoints, export or
evaluation, in a fresh process of each checkout's own code (``PYTHONPATH`` = the checkout), and reads the
mean ``time/step_s`` of its logged windows after the first one (compilation, worker start-up and cache
warm-up land there). Runs alternate before/after so that load on a shared machine hits both alike; the
figure to quote is the ratio of the medians, not either absolute time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def step_time(checkout: Path, config: str, stage: str, steps: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as dump:
        args = [sys.executable, "train.py", "--config", config, f"--job.dump_folder={dump}", "--job.name=bench",
                f"--curriculum.only_stage={stage}", f"--curriculum.stages.{stage}.steps={steps}",
                "--checkpoint.enable=false", "--checkpoint.export_policy=false", "--eval.closed_loop_episodes=0",
                "--metrics.enable_tensorboard=false", f"--metrics.log_freq={max(1, steps // 6)}", *extra]
        env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        proc = subprocess.run(args, cwd=checkout, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{checkout}: train.py exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in (Path(dump) / "bench" / "metrics.jsonl").read_text().splitlines()]
        windows = [r["time/step_s"] for r in records if "time/step_s" in r][1:]
        if not windows:
            raise SystemExit(f"{checkout}: too few logged windows; raise --steps")
        return statistics.mean(windows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the earlier code")
    parser.add_argument("--after", type=Path, required=True, help="checkout of the later code")
    parser.add_argument("--config", default="train_configs/debug/curriculum.toml")
    parser.add_argument("--stage", default="cotrain")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --section.key=value for both checkouts (e.g. a data path)")
    parser.add_argument("--out", type=Path, default=Path("outputs/step_time.json"))
    args = parser.parse_args()
    extra = [f"--{kv}" for kv in args.set]
    times: dict[str, list[float]] = {"before": [], "after": []}
    for repeat in range(args.repeats):
        for name, checkout in (("before", args.before), ("after", args.after)):
            seconds = step_time(checkout.resolve(), args.config, args.stage, args.steps, extra)
            times[name].append(seconds)
            print(f"repeat {repeat + 1}/{args.repeats} {name}: {seconds * 1000:.1f} ms/step", flush=True)
    before, after = statistics.median(times["before"]), statistics.median(times["after"])
    result = {"config": args.config, "stage": args.stage, "steps": args.steps, "seconds_per_step": times,
              "median_before_s": before, "median_after_s": after, "after_over_before": after / before}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"median {before * 1000:.1f} -> {after * 1000:.1f} ms/step: after/before = {after / before:.3f} "
          f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
