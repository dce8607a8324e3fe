"""What a user runs: ``torchrun --nproc_per_node=2 train.py --config train_configs/debug/curriculum.toml
--parallelism.tensor_parallel_degree=2`` on the generated toy world, against one process on the same global
batch. Both start from one checkpoint of a one-process first stage (a sharded random initialisation draws
differently from a whole one), then train the co-training and fine-tuning stages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed.checkpoint as dcp

from tests.distributed_helper import REPO_ROOT, free_port
from tests.train.helpers import losses_by_step, read_jsonl

CONFIG = REPO_ROOT / "train_configs" / "debug" / "curriculum.toml"
SHORT = ["--metrics.log_freq=1", "--checkpoint.export_policy=false", "--data.num_workers=0",
         *(f"--curriculum.stages.{s}.steps=3" for s in ("vlm_pretrain", "cotrain", "finetune"))]


def launch(dump: Path, name: str, nproc: int, *extra: str, config: Path = CONFIG, short: tuple = tuple(SHORT)) -> Path:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d",
           f"--rdzv_endpoint=127.0.0.1:{free_port()}", "train.py", "--config", str(config),
           f"--job.dump_folder={dump}", f"--job.name={name}", *short, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dump / name


@pytest.mark.distributed
@pytest.mark.skipif(not (REPO_ROOT / "outputs" / "data" / "toyworld").is_dir(), reason="toy-world data not generated")
def test_tp2_trains_the_debug_curriculum_like_one_process(tmp_path):
    first = launch(tmp_path, "stage1", 1, "--curriculum.only_stage=vlm_pretrain", "--checkpoint.interval=3")
    start = ["--curriculum.skip_stages=vlm_pretrain", f"--checkpoint.initial_load_path={first}/checkpoints/step-3",
             "--checkpoint.interval=3"]
    one = losses_by_step(read_jsonl(launch(tmp_path, "one", 1, *start)))
    tp_run = launch(tmp_path, "tp2", 2, *start, "--parallelism.tensor_parallel_degree=2")
    tp = losses_by_step(read_jsonl(tp_run))
    assert len(one) == 6 and sorted(tp) == sorted(one)
    assert [tp[s] for s in sorted(one)] == pytest.approx([one[s] for s in sorted(one)], rel=1e-5)
    # The checkpoint holds each rank's half of the split weights.
    final = sorted((tp_run / "checkpoints").glob("step-*"))[-1]
    meta = dcp.FileSystemReader(str(final)).read_metadata().state_dict_metadata
    chunks = meta["model.vlm.layers.0.attention.wq.weight"].chunks
    assert len(chunks) == 2 and {tuple(c.offsets) for c in chunks} == {(0, 0), (32, 0)}
