"""The README's main command, shortened: ./run_train.sh runs all three debug stages end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("vlm_pretrain", "cotrain", "finetune")


def _run_train(dump: Path, *extra: str) -> subprocess.CompletedProcess:
    short = [f"--curriculum.stages.{name}.steps=3" for name in STAGES]
    args = ["bash", "run_train.sh", f"--job.dump_folder={dump}", "--metrics.log_freq=1",
            "--checkpoint.interval=2", "--eval.closed_loop_episodes=4", *short, *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_run_train_sh_runs_the_shortened_debug_curriculum(tmp_path):
    proc = _run_train(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    run = tmp_path / "debug_curriculum"

    # Checkpoints: a complete one at the end of every stage (global steps 3, 6, 9).
    checkpoints = run / "checkpoints"
    for step in (3, 6, 9):
        assert (checkpoints / f"step-{step}").is_dir(), sorted(p.name for p in checkpoints.iterdir())

    # Metrics: one line per step, tagged with the stage that produced it.
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 10))
    assert [r["stage"] for r in lines] == [s for s in STAGES for _ in range(3)]
    assert all("loss/text" in r and "loss/action" in r for r in lines)
    assert lines[0]["loss/action"] == 0.0 and lines[-1]["loss/action"] > 0.0  # stage 1 trains text only

    # The exported policy and the report with the closed-loop numbers.
    policy = run / "export" / "policy"
    for name in ("model.safetensors.index.json", "config.json", "tokenizer.json"):
        assert (policy / name).is_file()
    report = json.loads((run / "report.json").read_text())
    assert report["episodes"] == 4
    assert 0.0 <= report["success_rate"] <= 1.0 and 0.0 <= report["baseline_success_rate"] <= 1.0
    assert set(report["stage_losses"]) == set(STAGES)
    assert "closed-loop success" in proc.stdout and "report.json" in proc.stdout


@pytest.mark.parametrize("bad, message", [("--training.stpes=1", "did you mean 'training.steps'")])
def test_run_train_sh_reports_config_errors_without_traceback(tmp_path, bad, message):
    proc = _run_train(tmp_path, bad)
    assert proc.returncode == 2
    assert message in proc.stderr + proc.stdout and "Traceback" not in proc.stderr + proc.stdout
