"""Flow vs FAST in the toy world: the same curriculum, seeds and steps, three ways of producing actions.

    python scripts/ablate_fast.py --parallel 3 --output outputs/ablation_fast.json

- ``flow``: the curriculum as written (the flow-matching Action Expert, no FAST tokens);
- ``flow_fast_ki``: pi0.5 with knowledge insulation as published: every robot sample also carries its
  chunk's FAST tokens, which the VLM learns (``fast_loss_weight``) while the expert reads detached
  keys/values and never sees them; served with the flow expert (``action_decoding = "flow"``);
- ``pi0_fast``: pi0-FAST alone: the FAST loss only (flow weight 0, the expert does not run or train);
  served by decoding FAST tokens (``action_decoding = "fast"``).

The VLM-pretraining stage has no robot data and no FAST tokens (they take the top rows of the
vocabulary, docs/fast.md, so the model's shape is the same), so it runs once and every variant starts
its later stages from its checkpoint (``--curriculum.skip_stages`` + ``--checkpoint.initial_load_path``).
The FAST tokenizer is fitted first when ``--fast-tokenizer`` does not exist yet. Each variant is an
ordinary ``train.py`` job run by ``ablate_curriculum.run_variant`` (its own run folder, train.log,
report.json); extra arguments after ``--`` go to every job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablate_curriculum import DEBUG_CONFIG, REPO, run_variant  # noqa: E402

from torchtitan_vla.config import load_config, parse_command_line, resolve_stages  # noqa: E402


def variants(args) -> dict[str, list[str]]:
    tuned = [f"--curriculum.stages.{stage}.training" for stage in args.robot_stages]
    fast = [f"--model.fast_tokenizer_path={args.fast_tokenizer}"]
    return {
        "flow": [],
        "flow_fast_ki": fast + [o for t in tuned for o in (f"{t}.fast_loss_weight={args.fast_loss_weight}",
                                                           f"{t}.knowledge_insulation=true")],
        "pi0_fast": fast + ["--model.action_decoding=fast"] + [
            o for t in tuned for o in (f"{t}.fast_loss_weight={args.fast_loss_weight}", f"{t}.action_loss_weight=0")
        ] + [f"--curriculum.stages.{args.robot_stages[0]}.training.trainable=[\"vision\", \"decoder\"]",
             *[f"--curriculum.stages.{s}.training.trainable=[\"decoder\"]" for s in args.robot_stages[1:]]],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEBUG_CONFIG)
    parser.add_argument("--pretrain-stage", default="vlm_pretrain", help="the stage run once and shared")
    parser.add_argument("--robot-stages", default="cotrain,finetune", help="stages that get the FAST settings")
    parser.add_argument("--fast-tokenizer", default="outputs/fast/toyworld_fast.json")
    parser.add_argument("--fast-vocab-size", type=int, default=128)
    parser.add_argument("--fast-loss-weight", type=float, default=1.0)
    parser.add_argument("--variants", default="flow,flow_fast_ki,pi0_fast")
    parser.add_argument("--parallel", type=int, default=1, help="variants run at once")
    parser.add_argument("--output", default="", help="JSON results (default: <dump_folder>/ablation_fast.json)")
    parser.add_argument("extra", nargs="*", help="overrides passed to every job (after --)")
    args = parser.parse_args(argv)
    args.robot_stages = args.robot_stages.split(",")
    table = variants(args)
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(table)}")
    loaded = load_config(*_command(args, []))
    cfg = loaded.config
    base = f"{cfg.job.name}_fast"
    # the steps the shared stage runs, per-stage command-line overrides applied (its last checkpoint's name)
    pretrain_steps = next((s.steps for s in resolve_stages(loaded) if s.name == args.pretrain_stage), None)
    if pretrain_steps is None:
        parser.error(f"--pretrain-stage {args.pretrain_stage!r} is not a stage of {args.config}")

    if not os.path.exists(REPO / args.fast_tokenizer):
        subprocess.run([sys.executable, str(REPO / "scripts" / "fit_fast_tokenizer.py"), "--config", args.config,
                        "--stage", args.robot_stages[0], "--vocab-size", str(args.fast_vocab_size),
                        "--out", args.fast_tokenizer], cwd=REPO, check=True)
    stage1 = run_variant(args, args.pretrain_stage, [f"--curriculum.only_stage={args.pretrain_stage}",
                                                     "--eval.closed_loop_episodes=0", "--checkpoint.export_policy=false"],
                         base, cfg.job.dump_folder)
    if stage1["returncode"] != 0:
        print(f"[ablate] the shared stage failed; see {stage1['run_folder']}/train.log")
        return 1
    checkpoint = Path(stage1["run_folder"]) / cfg.checkpoint.folder / f"step-{pretrain_steps}"
    shared = [f"--curriculum.skip_stages={args.pretrain_stage}", f"--checkpoint.initial_load_path={checkpoint}"]
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(lambda n: run_variant(args, n, shared + table[n], base, cfg.job.dump_folder), chosen))

    print(f"\n{'variant':<14} {'success':>8} {'random shape':>13} {'no instruction':>15} {'repaired':>9} {'time':>7}")
    for r in results:
        rates = ["failed" if r.get(key) is None else f"{r[key]:.2f}"
                 for key in ("success_rate", "baseline_success_rate", "no_instruction_success_rate")]
        repaired = "-" if r.get("fast_decodes") is None else f"{r['fast_decode_fallbacks']}/{r['fast_decodes']}"
        print(f"{r['variant']:<14} {rates[0]:>8} {rates[1]:>13} {rates[2]:>15} {repaired:>9} {r['seconds']:>6.0f}s")
    output = Path(args.output or Path(cfg.job.dump_folder) / "ablation_fast.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"config": args.config, "extra": args.extra, "shared_stage": stage1,
                                  "results": results}, indent=1))
    print(f"\nwrote {output}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


def _command(args, overrides: list[str]):
    command = parse_command_line(["--config", args.config, *args.extra, *overrides])
    return command.config_path, command.overrides


if __name__ == "__main__":
    sys.exit(main())
