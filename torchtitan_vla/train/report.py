"""The end-of-job report: loss per stage, closed-loop success of the exported policy, where things are.

Printed on rank 0 and written to ``<run folder>/report.json``, so scripts (and CI) read one file instead
of scraping logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchtitan_vla.config import JobConfig
from torchtitan_vla.utils.logging import logger

# How many of a stage's last logged lines are averaged into its "final" loss: one logged value is noisy.
_TAIL = 3


def stage_losses(metrics_file: Path) -> dict[str, dict[str, float]]:
    """``{stage: {"first": ..., "final": ..., "final_text": ..., "final_action": ..., "final_subtask": ...,
    "final_fast": ...}}`` from metrics.jsonl."""
    rows: dict[str, list[dict[str, Any]]] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            record = json.loads(line)
            if "stage" in record and "loss" in record:
                rows.setdefault(record["stage"], []).append(record)
    out = {}
    for stage, records in rows.items():
        tail = records[-_TAIL:]

        def mean(key: str, tail=tail) -> float:
            return sum(r.get(key, 0.0) for r in tail) / len(tail)

        out[stage] = {
            "steps_logged": len(records),
            "first": records[0]["loss"],
            "final": mean("loss"),
            "final_text": mean("loss/text"),
            "final_action": mean("loss/action"),
            "final_subtask": mean("loss/subtask"),
            "final_fast": mean("loss/fast"),
        }
    return out


def data_skipped(metrics_file: Path) -> dict[str, int]:
    """Examples skipped per source over the whole job: each stage's loader counts from the stage's start
    (and keeps counting across a resume), and a stage's last step is always logged, so the last
    ``skipped/<source>`` of each stage is that stage's total."""
    last: dict[str, dict[str, int]] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            record = json.loads(line)
            counts = {k.removeprefix("skipped/"): v for k, v in record.items() if k.startswith("skipped/")}
            if counts and "stage" in record:
                last[record["stage"]] = counts
    total: dict[str, int] = {}
    for counts in last.values():
        for source, n in counts.items():
            total[source] = total.get(source, 0) + n
    return total


def closed_loop(cfg: JobConfig, policy_folder: Path) -> dict[str, Any]:
    """Closed-loop metrics of the exported policy, or an empty dict when evaluation is off."""
    episodes = cfg.eval.closed_loop_episodes
    if episodes <= 0:
        return {}
    if not policy_folder.is_dir():
        logger.warning(f"eval.closed_loop_episodes = {episodes} but no exported policy at {policy_folder}; "
                       "set checkpoint.export_policy = true to evaluate")
        return {}
    from torchtitan_vla.eval.closed_loop import evaluate_export

    logger.info(f"closed-loop evaluation: {episodes} episodes in the toy world")
    metrics = evaluate_export(str(policy_folder), cfg.eval)
    result = {"episodes": episodes, "success_rate": metrics["success_rate"], "closed_loop": metrics}
    if cfg.eval.baselines:
        result["baseline_success_rate"] = metrics["random_shape/success_rate"]
        result["no_instruction_success_rate"] = metrics["no_instruction/success_rate"]
    return result


def write_report(cfg: JobConfig, run_folder: Path, export_folder: Path) -> dict[str, Any]:
    """Evaluate, assemble and write ``report.json``; returns the report (rank 0 only)."""
    report: dict[str, Any] = {
        "job": cfg.job.name,
        "stage_losses": stage_losses(run_folder / "metrics.jsonl"),
        "data_skipped": data_skipped(run_folder / "metrics.jsonl"),
        **closed_loop(cfg, export_folder / "policy"),
        "paths": {
            "run_folder": str(run_folder),
            "checkpoints": str(run_folder / cfg.checkpoint.folder),
            "metrics": str(run_folder / "metrics.jsonl"),
            "tensorboard": str(run_folder / "tb") if cfg.metrics.enable_tensorboard else None,
            "wandb": str(run_folder / "wandb") if cfg.metrics.enable_wandb else None,
            "export": str(export_folder),
        },
    }
    (run_folder / "report.json").write_text(json.dumps(report, indent=1))
    lines = ["report:"]
    for stage, loss in report["stage_losses"].items():
        lines.append(f"  {stage}: loss {loss['first']:.4f} -> {loss['final']:.4f} "
                     f"(text {loss['final_text']:.4f}, action {loss['final_action']:.4f}, fast {loss['final_fast']:.4f})")
    if any(report["data_skipped"].values()):
        lines.append("  examples skipped (damaged or unavailable data): "
                     + ", ".join(f"{s} {n}" for s, n in report["data_skipped"].items()))
    if "success_rate" in report:
        line = f"  closed-loop success {report['success_rate']:.2f} over {report['episodes']} episodes"
        if "baseline_success_rate" in report:
            line += (f"; random-shape baseline {report['baseline_success_rate']:.2f}, "
                     f"same policy without the instruction {report['no_instruction_success_rate']:.2f}")
        if "fast_decodes" in report["closed_loop"]:
            line += (f"; pi0-FAST chunks repaired {report['closed_loop']['fast_decode_fallbacks']} of "
                     f"{report['closed_loop']['fast_decodes']}")
        lines.append(line)
    for name, path in report["paths"].items():
        if path:
            lines.append(f"  {name}: {path}")
    lines.append(f"  written to {run_folder / 'report.json'}")
    logger.info("\n".join(lines))
    return report
