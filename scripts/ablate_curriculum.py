"""Ablate a curriculum: the full job, the job without its VLM-pretraining stage, and the job whose
co-training stage sees robot data only. Prints closed-loop success side by side and writes JSON.

    python scripts/ablate_curriculum.py                      # the debug curriculum, one job at a time
    python scripts/ablate_curriculum.py --parallel 3 --output outputs/ablation.json

Each variant is an ordinary ``train.py`` job (its own run folder ``<dump_folder>/<job.name>_<variant>``
with checkpoints, metrics and ``report.json``); only command-line overrides differ:

- ``full``: the curriculum as written;
- ``no_pretrain``: ``--curriculum.skip_stages=<pretrain stage>`` (co-training starts from the initialisation);
- ``no_web_in_cotrain``: the co-training mixture is the robot source alone and its text loss weight 0.

A run folder that already holds a finished job resumes it (the training is done, so only the export and
the evaluation run again): remove the folder, or pass ``--job.name``, to train anew.

Extra arguments after ``--`` go to every job (e.g. ``-- --eval.closed_loop_episodes=100``). On a CPU each job
uses one thread (``OMP_NUM_THREADS=1``), so ``--parallel`` up to the number of cores costs little per job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torchtitan_vla.config import load_config, load_stages, parse_command_line

REPO = Path(__file__).resolve().parent.parent

DEBUG_CONFIG = "train_configs/debug/curriculum.toml"
DEBUG_DATA = "outputs/data/toyworld"


def variants(args) -> dict[str, list[str]]:
    cotrain = f"--curriculum.stages.{args.cotrain_stage}"
    return {
        "full": [],
        "no_pretrain": [f"--curriculum.skip_stages={args.pretrain_stage}"],
        "no_web_in_cotrain": [f"{cotrain}.data.mixture={{ {args.robot_source} = 1.0 }}",
                              f"{cotrain}.training.text_loss_weight=0.0"],
    }


def run_variant(args, name: str, overrides: list[str], base_name: str, dump_folder: str) -> dict:
    job_name = f"{base_name}_{name}"
    run_dir = Path(dump_folder) / job_name
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "train.py"), "--config", args.config, *args.extra, f"--job.name={job_name}",
           *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    with open(run_dir / "train.log", "a") as log:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    result = {"variant": name, "overrides": overrides, "returncode": rc, "seconds": round(seconds, 1),
              "run_folder": str(run_dir)}
    report = run_dir / "report.json"
    if rc == 0 and report.exists():
        data = json.loads(report.read_text())
        result.update({key: data.get(key) for key in
                       ("success_rate", "episodes", "baseline_success_rate", "no_instruction_success_rate")})
        result["final_action_loss"] = {stage: losses.get("final_action")
                                       for stage, losses in data.get("stage_losses", {}).items()}
        closed = data.get("closed_loop", {})  # pi0-FAST policies count their repaired token streams
        result.update({key: closed.get(key) for key in ("fast_decodes", "fast_decode_fallbacks")})
    print(f"[ablate] {name}: exit {rc} after {seconds:.0f} s; success {result.get('success_rate')}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEBUG_CONFIG)
    parser.add_argument("--pretrain-stage", default="vlm_pretrain", help="stage left out by 'no_pretrain'")
    parser.add_argument("--cotrain-stage", default="cotrain", help="stage whose web text 'no_web_in_cotrain' removes")
    parser.add_argument("--robot-source", default="toy_robot", help="the co-training stage's robot data source")
    parser.add_argument("--variants", default="full,no_pretrain,no_web_in_cotrain")
    parser.add_argument("--parallel", type=int, default=1, help="jobs run at once")
    parser.add_argument("--output", default="", help="JSON file for the results (default: <dump_folder>/ablation.json)")
    parser.add_argument("extra", nargs="*", help="overrides passed to every job (after --)")
    args = parser.parse_args(argv)

    table = variants(args)
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(table)}")
    # Typos in a stage or source name fail now, not after the first (long) job; the checks of the files
    # the configuration names follow once the debug data exists.
    commands = [parse_command_line(["--config", args.config, *table[name], *args.extra]) for name in chosen]
    for command in commands:
        load_config(command.config_path, command.overrides)
    if args.config == DEBUG_CONFIG:  # as run_train.sh does: the toy world's data, generated when absent
        subprocess.run([sys.executable, "-m", "torchtitan_vla.envs.toyworld.generate", "--out", DEBUG_DATA],
                       cwd=REPO, check=True)
    for command in commands:
        load_stages(command.config_path, command.overrides)
    cli = parse_command_line(["--config", args.config, *args.extra])
    cfg = load_config(cli.config_path, cli.overrides).config

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(lambda n: run_variant(args, n, table[n], cfg.job.name, cfg.job.dump_folder), chosen))

    print(f"\n{'variant':<20} {'success':>8} {'episodes':>9} {'random shape':>13} {'no instruction':>15} {'time':>7}")
    for r in results:
        rates = ["failed" if r.get(key) is None else f"{r[key]:.2f}"
                 for key in ("success_rate", "baseline_success_rate", "no_instruction_success_rate")]
        print(f"{r['variant']:<20} {rates[0]:>8} {r.get('episodes') or '-':>9} {rates[1]:>13} {rates[2]:>15} "
              f"{r['seconds']:>6.0f}s")
    output = Path(args.output or Path(cfg.job.dump_folder) / "ablation.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"config": args.config, "extra": args.extra, "results": results}, indent=1))
    print(f"\nwrote {output}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
