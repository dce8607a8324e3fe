"""2-process gloo runs of the real tiny VLA: FSDP/HSDP parity with one process, AC gradients,
per-rank shares, frozen vision, mixed-mesh clipping and sharded HF loading (one torchrun launch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed_helper import run_torchrun

SCRIPT = Path(__file__).with_name("dist_checks.py")

EXPECTED = [
    "OK parity joint fusion, replicate=1 x shard=2",
    "OK parity joint fusion, replicate=2 x shard=1",
    "OK parity late fusion, replicate=1 x shard=2",
    "OK activation checkpointing (full, selective op, selective every 2nd) gives the same gradients",
    "OK each rank holds ~1/2",
    "OK a frozen vision encoder is sharded, never changes and has no optimizer state",
    "OK global grad norm over mixed meshes",
    "OK sharded HF loading (per-rank slices) gives the unsharded logits",
]


@pytest.mark.distributed
def test_two_rank_fsdp_hsdp_vla():
    proc = run_torchrun(SCRIPT, nproc=2, timeout=240)
    for line in EXPECTED:
        assert line in proc.stdout, f"missing '{line}' in:\n{proc.stdout}"
