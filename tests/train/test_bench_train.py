"""scripts/bench_train.py runs on CPU with the debug flavor and writes its JSON report."""

import json
import runpy
import sys

from tests.train.helpers import HERE

SCRIPT = HERE.parent.parent / "scripts" / "bench_train.py"


def test_bench_train_smoke_on_cpu(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    argv = ["bench_train.py", "--flavor", "debug", "--steps", "2", "--warmup", "1", "--local-batch-size", "1",
            "--max-seq-len", "256", "--horizon", "4", "--image-px", "64", "96", "--ac", "full", "--output", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    module = runpy.run_path(str(SCRIPT))
    assert module["main"](argv[1:]) == 0
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["ac"] == "full" and result["flavor"] == "debug" and result["timed_steps"] == 1
    assert result["step_time_s"] > 0 and result["samples_per_s"] > 0 and result["tokens_per_s"] > 0
    assert result["tflops_per_device"] > 0
    assert result["mfu_pct"] is None  # CPU: no peak to compare with
    assert result["memory/peak_rss_gib"] > 0
