"""scripts/gpu_check.sh --dry-run runs every part end to end on the CPU, and gpu_report.py turns its JSON
into the GPU section of docs/BENCHMARKS.md; the part bookkeeping records failures in the part's JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
DRY_RUN_LIMIT_S = 60
# The dry run takes ~25 s on an idle 2-core machine (docs/BENCHMARKS.md); on a loaded one several times
# that. The test only catches a hang or a part that runs at full size by mistake.
HANG_LIMIT_S = 5 * DRY_RUN_LIMIT_S


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--dry-run", str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, time.perf_counter() - start


def read(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_dry_run_writes_every_part(dry_run):
    out, wall_s = dry_run
    # Device calls return at most 8 files: seven JSON files and the log.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["env.json", "bench_train.json", "bench_infer.json", "parity_sdpa.json", "parity_flex.json", "render.json",
         "rtc_bf16.json", "gpu_check.log"])
    checks = {}
    for name in ("env", "bench_train", "bench_infer", "parity_sdpa", "parity_flex", "render", "rtc_bf16"):
        checks.update(read(out, name)["checks"])
    assert {k: v["status"] for k, v in checks.items()} == {
        "env": "ok", "parity_sdpa": "ok", "parity_flex": "skipped", "bench_infer": "ok", "render": "ok", "rtc_bf16": "ok",
        "train_eager": "ok", "train_web": "ok", "train_compile": "skipped", "train_float8": "skipped"}, checks

    env = read(out, "env")
    assert env["mode"] == "dry-run" and env["torch"] and env["packages"]["transformers"]
    train = read(out, "bench_train")["results"]
    assert [r["batch"] for r in train] == ["robot", "web"]
    for r in train:
        assert r["step_time_s"] > 0 and r["samples_per_s"] > 0 and r["tokens_per_s"] > 0 and r["timed_steps"] == 1
    infer = read(out, "bench_infer")["results"]
    assert {(r["cameras"], r["mode"]) for r in infer} == {(1, "cached"), (3, "cached"), (1, "uncached"), (3, "uncached")}
    assert all(0 < r["p50_ms"] <= r["p90_ms"] for r in infer)
    tokens = {r["cameras"]: r["prefix_tokens"] for r in infer}
    assert tokens[3] > tokens[1]  # two more images in the prompt
    parity = read(out, "parity_sdpa")
    assert parity["setup"]["dtype"] == "bfloat16"
    assert parity["agreement"]["argmax_agreement"] > 0.9  # same weights: bf16 rounding flips few argmaxes
    assert 0 <= parity["agreement"]["max_abs_logit_diff"] < 0.1
    assert parity["forward"]["native"]["median_s"] > 0 and parity["train"]["transformers_over_native"] > 0
    rtc = read(out, "rtc_bf16")["fusions"]
    assert sorted(rtc) == ["joint", "late"]
    for r in rtc.values():
        assert all(r[mode]["finite"] and r[mode]["frozen_exact"] for mode in ("guided", "prefix")), r
        assert r["latency_ms_p50"]["guided"] > 0
    render = read(out, "render")
    assert render["mujoco_gl"] == "osmesa" and all(r["step_render_fps"] > 0 for r in render["results"])
    assert wall_s < HANG_LIMIT_S, f"dry run took {wall_s:.0f}s (target {DRY_RUN_LIMIT_S}s on an idle machine)"


def test_report_fills_the_gpu_section_from_the_json(dry_run, tmp_path):
    out, _ = dry_run
    report = load_script("gpu_report")
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Serving\n\nkept\n")
    assert report.main([str(out), "--doc", str(doc)]) == 0
    first = doc.read_text()
    assert first.startswith("# Benchmarks\n\n## Serving\n\nkept\n")
    assert first.count(report.BEGIN) == 1 and first.count(report.END) == 1
    assert "not GPU figures" in first  # a dry run never passes for GPU numbers
    for r in read(out, "bench_infer")["results"]:
        assert f"| {r['cameras']} | {r['prefix_tokens']} | {r['mode']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} |" in first
    robot = read(out, "bench_train")["results"][0]
    assert f"| robot | {robot['ac']} | False | 1 | {robot['step_time_s']:.3f} |" in first
    assert "| parity_flex | skipped |" in first
    guided = read(out, "rtc_bf16")["fusions"]["late"]["guided"]
    assert f"| late | guided | True | True | {guided['rel_max_diff']:.4f} | {guided['guided_over_free']:.3f} |" in first
    # A second run replaces the section instead of appending another.
    assert report.main([str(out), "--doc", str(doc)]) == 0
    assert doc.read_text() == first


def test_report_compares_float8_with_the_same_bf16_setting():
    report = load_script("gpu_report")
    row = dict(batch="robot", ac="selective", compile=False, local_batch_size=64)
    results = [{**row, "float8": None, "step_time_s": 1.5}, {**row, "ac": "full", "float8": None, "step_time_s": 9.0},
               {**row, "float8": "tensorwise", "step_time_s": 1.0}]
    assert report.float8_ratio({"results": results}) == [
        "", "float8 (tensorwise) vs bf16, AC selective, compile False: step 1.000 s vs 1.500 s (1.50x)."]


def test_a_failed_part_records_its_error_and_keeps_results(tmp_path):
    part = load_script("gpu_check_part")
    json_path, log = tmp_path / "bench_train.json", tmp_path / "part.log"
    json_path.write_text(json.dumps({"results": [{"ac": "none"}]}))
    log.write_text("building\ntorch.OutOfMemoryError: CUDA out of memory\n")
    assert part.main(["finish", "train_compile", str(json_path), "124", "90", "90", str(log)]) == 0
    assert part.main(["finish", "train_web", str(json_path), "0", "12", "30", str(log)]) == 0
    data = json.loads(json_path.read_text())
    assert data["results"] == [{"ac": "none"}]
    assert data["checks"]["train_compile"]["status"] == "timeout"
    assert "CUDA out of memory" in data["checks"]["train_compile"]["error"]
    assert data["checks"]["train_web"] == {"status": "ok", "rc": 0, "wall_s": 12.0, "cap_s": 30.0}
    # A part that wrote no JSON at all still gets one, with its error.
    assert part.main(["finish", "render", str(tmp_path / "render.json"), "1", "3", "25", str(log)]) == 0
    assert json.loads((tmp_path / "render.json").read_text())["checks"]["render"]["status"] == "failed"


def test_bench_model_shares_one_copy_of_the_weights():
    """Both implementations on one set of tensors: what lets the 2B comparison fit in CPU memory."""
    import torch

    bench = load_script("bench_model")
    hf = bench.build_hf(bench.BENCH_ARGS, "cpu", torch.float32)
    native = bench.build_native_sharing(bench.BENCH_ARGS, hf, "cpu", "sdpa")
    hf_storage = {p.untyped_storage().data_ptr() for p in hf.parameters()}
    assert all(p.untyped_storage().data_ptr() in hf_storage for p in native.parameters())


def test_bench_train_records_a_failing_configuration_and_runs_the_next(tmp_path):
    """A sweep configuration that fails (here: samples longer than max_seq_len) becomes a result with its
    error; the others still run, the exit status says something failed, --append keeps earlier results."""
    bench = load_script("bench_train")
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"results": [{"ac": "earlier"}], "checks": {"train_eager": {"status": "ok"}}}))
    argv = ["--flavor", "debug", "--steps", "2", "--warmup", "1", "--local-batch-size", "1", "--horizon", "4",
            "--image-px", "64", "64", "--batch", "web", "--max-seq-len", "64", "--ac", "none", "full",
            "--output", str(out), "--append"]
    assert bench.main(argv) == 1
    report = json.loads(out.read_text())
    assert report["checks"] == {"train_eager": {"status": "ok"}}
    assert [r["ac"] for r in report["results"]] == ["earlier", "none", "full"]
    assert all("exceeds data.max_seq_len=64" in r["error"] for r in report["results"][1:])
