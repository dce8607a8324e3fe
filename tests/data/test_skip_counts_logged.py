"""Skip counts per source reach the console line, metrics.jsonl, TensorBoard and report.json.

The stand-in curriculum runs with the project's VLADataLoader (which counts ``Batch.skipped`` per source
and keeps the counts in its checkpointed state) over the stand-in samples; its collator reports one skipped
example of the web source per web sample, so every count is known in advance.
"""

from __future__ import annotations

import dataclasses
import json

import torch

from tests.train.helpers import CONFIG, read_jsonl
from tests.train.standin import SyntheticMixture, build_loader, collate, standin_spec
from torchtitan_vla.config import load_config, parse_command_line, resolve_stages
from torchtitan_vla.data.loader import VLADataLoader
from torchtitan_vla.train.main import run
from torchtitan_vla.train.metrics import console_line


def _counting_loader(cfg, tokenizer, dp_rank, dp_world_size, split) -> VLADataLoader:
    dataset: SyntheticMixture = build_loader(cfg, tokenizer, dp_rank, dp_world_size, split).dataset
    web = [name == "web" for name in dataset.names]

    def collate_with_skips(samples):
        batch = collate(samples)
        batch.skipped = torch.stack([(batch.source_id == i).sum() * is_web for i, is_web in enumerate(web)])
        return batch

    return VLADataLoader(dataset, dataset.names, batch_size=cfg.training.local_batch_size,
                         collate_fn=collate_with_skips, num_workers=0)


def test_skip_counts_per_source_reach_every_sink_and_the_report(tmp_path):
    argv = ["--config", str(CONFIG), f"--job.dump_folder={tmp_path}", "--job.name=skips", "--metrics.log_freq=1",
            "--metrics.enable_tensorboard=true", "--checkpoint.enable=false"]
    loaded = load_config(parse_command_line(argv).config_path, parse_command_line(argv).overrides)
    spec = dataclasses.replace(standin_spec(), build_dataloader=_counting_loader)
    assert run(loaded, resolve_stages(loaded), spec=spec) == 0
    run_folder = tmp_path / "skips"

    records = [r for r in read_jsonl(run_folder) if "loss" in r]
    vlm = [r for r in records if r["stage"] == "vlm"]
    # Stage 1 reads only the web source, four samples per step: the count grows by 4 a step.
    assert [r["skipped/web"] for r in vlm] == [4 * i for i in range(1, 7)]
    cotrain = [r for r in records if r["stage"] == "cotrain"]
    assert set(cotrain[0]) >= {"skipped/web", "skipped/robot_a"} and cotrain[-1]["skipped/robot_a"] == 0
    assert 0 < cotrain[0]["skipped/web"] <= cotrain[-1]["skipped/web"] < 24, "a new count per stage loader"
    finetune = [r for r in records if r["stage"] == "finetune"]
    assert all(r["skipped/robot_b"] == 0 and "skipped/web" not in r for r in finetune)

    report = json.loads((run_folder / "report.json").read_text())
    assert report["data_skipped"] == {"web": 24 + cotrain[-1]["skipped/web"], "robot_a": 0, "robot_b": 0}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_folder / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("skipped/web")] == [r["skipped/web"] for r in vlm + cotrain]


def test_console_line_names_the_sources_that_skipped():
    record = {"loss": 1.0, "grad_norm": 0.5, "throughput/samples_per_s": 2.0, "throughput/tokens_per_s": 30.0,
              "time/data_wait_fraction": 0.1, "skipped/cc12m": 3, "skipped/robot": 0, "skipped/obelics": 1}
    line = console_line(record, 5, 10, "cotrain", 2, 4, 12.0)
    assert "| data skipped cc12m 3, obelics 1 |" in line
