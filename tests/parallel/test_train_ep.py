"""What a user runs: ``torchrun --nproc_per_node=2 train.py --config train_configs/debug/moe.toml
--parallelism.expert_parallel_degree=2`` on the generated toy world, against the same two ranks without expert
parallelism (the same data: each data-parallel rank reads its own share whatever the layout; EP=2 against one
process on one global batch is ep_checks.py's). Both start from one checkpoint of a one-process run (a sharded
random initialisation draws differently from a whole one)."""

from __future__ import annotations

import pytest
import torch.distributed.checkpoint as dcp

from tests.distributed_helper import REPO_ROOT
from tests.parallel.test_train_tp import launch
from tests.train.helpers import losses_by_step, read_jsonl

CONFIG = REPO_ROOT / "train_configs" / "debug" / "moe.toml"
SHORT = ("--metrics.log_freq=1", "--data.num_workers=0", "--training.local_batch_size=4")


@pytest.mark.distributed
@pytest.mark.skipif(not (REPO_ROOT / "outputs" / "data" / "toyworld").is_dir(), reason="toy-world data not generated")
def test_ep2_trains_the_debug_moe_job_like_plain_data_parallel(tmp_path):
    first = launch(tmp_path, "init", 1, "--curriculum.stages.cotrain.steps=1", "--checkpoint.interval=1",
                   config=CONFIG, short=SHORT)
    start = ["--curriculum.stages.cotrain.steps=3", f"--checkpoint.initial_load_path={first}/checkpoints/step-1"]
    plain = read_jsonl(launch(tmp_path, "fsdp2", 2, *start, config=CONFIG, short=SHORT))
    ep_run = launch(tmp_path, "ep2", 2, *start, "--parallelism.expert_parallel_degree=2", config=CONFIG, short=SHORT)
    ep = read_jsonl(ep_run)
    want, got = losses_by_step(plain), losses_by_step(ep)
    assert sorted(got) == sorted(want) == [1, 2, 3]
    assert [got[s] for s in want] == pytest.approx([want[s] for s in want], rel=1e-5)
    # The load-balancing metric is the global batch's, so the layouts log the same value.
    balance = [[r["moe/load_balancing_loss"] for r in run if "moe/load_balancing_loss" in r] for run in (plain, ep)]
    assert len(balance[0]) == 3 and balance[1] == pytest.approx(balance[0], rel=1e-5)
    assert all(v >= 1.0 for v in balance[0])  # E * sum f*P is at least 1 (1 when perfectly balanced)
    # The checkpoint holds each EP rank's half of the experts.
    final = sorted((ep_run / "checkpoints").glob("step-*"))[-1]
    meta = dcp.FileSystemReader(str(final)).read_metadata().state_dict_metadata
    chunks = meta["model.vlm.layers.1.feed_forward.experts.w1"].chunks
    assert {tuple(c.offsets) for c in chunks} == {(0, 0, 0), (4, 0, 0)}
