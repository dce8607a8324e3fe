"""metrics.jsonl (one line per log step), TensorBoard event files and an offline wandb run."""

import json

import pytest

from tests.train.helpers import read_jsonl, train
from tests.train.wandb_log import logged_config, logged_history
from torchtitan_vla.train.metrics import wandb_mode


def test_sinks_receive_every_log_step(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no API key anywhere
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert wandb_mode() == "offline"
    rc, run = train(
        tmp_path, "--curriculum.only_stage=cotrain", "--curriculum.stages.cotrain.steps=5", "--metrics.log_freq=2",
        "--metrics.enable_tensorboard=true", "--metrics.enable_wandb=true", "--checkpoint.enable=false",
        "--metrics.wandb_tags=[\"ci\"]", "--training.validation_freq=2", "--data.validation_mixture={ robot_b = 1.0 }",
    )
    assert rc == 0

    records = read_jsonl(run)
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == [7, 8, 10, 11]  # first step of the stage, every 2nd, last
    for r in train_records:
        assert r["stage"] == "cotrain"
        assert {"loss/text", "loss/action", "grad_norm", "lr/expert", "throughput/samples_per_s",
                "throughput/tokens_per_s", "time/data_wait_fraction", "memory/peak_rss_gib"} <= set(r)
        assert r["mfu_pct"] is None  # CPU without a stated nominal peak
        # Counted from the host batches: every stand-in sample is 12 unpadded tokens.
        assert r["throughput/tokens_per_s"] == pytest.approx(12 * r["throughput/samples_per_s"], rel=1e-9)
    val = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in val] == [8, 10]
    assert val[0]["val/loss"] != val[1]["val/loss"], "the model changed between validations"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [7, 8, 10, 11]
    assert acc.Scalars("loss")[-1].value == pytest.approx(train_records[-1]["loss"], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/loss")] == [8, 10]

    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    history = logged_history(next(offline[0].glob("run-*.wandb")))
    by_step = {int(h["_step"]): h for h in history}
    assert sorted(by_step) == [7, 8, 10, 11]
    for r in train_records:
        assert float(by_step[r["step"]]["loss"]) == pytest.approx(r["loss"], rel=1e-9)
        assert {"loss/text", "loss/action", "lr/expert", "grad_norm"} <= set(by_step[r["step"]])
    config = logged_config(next(offline[0].glob("run-*.wandb")))
    assert "optimizer" in config and "curriculum" in config, "the resolved config is logged"


def test_mfu_uses_a_stated_nominal_peak(tmp_path):
    rc, run = train(tmp_path, "--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=2",
                    "--metrics.peak_flops=1e9", "--checkpoint.enable=false")
    assert rc == 0
    assert all(r["mfu_pct"] > 0 for r in read_jsonl(run))


def test_profile_steps_write_a_chrome_trace_of_exactly_those_steps(tmp_path):
    rc, run = train(tmp_path, "--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=3",
                    "--metrics.profile_steps=[2]", "--checkpoint.enable=false")
    assert rc == 0
    traces = sorted(p.name for p in (run / "profile").iterdir())
    assert traces == ["step-2-rank0.json"]
    events = json.loads((run / "profile" / traces[0]).read_text())["traceEvents"]
    names = {e.get("name", "") for e in events}
    # The step's forward and backward and the optimizer update are in it.
    assert any("linear" in n or "addmm" in n for n in names)
    assert any("Backward" in n for n in names)
    assert any("Optimizer.step" in n or "adamw" in n.lower() for n in names)
