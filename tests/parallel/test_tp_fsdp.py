"""TP x FSDP on 4 gloo processes (tp=2 x dp_shard=2) against one process; one torchrun launch runs
tp_fsdp_checks.py and these tests assert on what it measured. About 60 s on the 2-core machine, hence
slow; the CI sibling of its clipping check is dist_checks' strided-shard gradient norm (2 processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed_helper import checked_values

SCRIPT = Path(__file__).with_name("tp_fsdp_checks.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return checked_values(SCRIPT, tmp_path_factory.mktemp("tp_fsdp"), nproc=4, timeout=900)


@pytest.mark.slow
@pytest.mark.distributed
def test_tp_x_fsdp_trains_like_one_process(results):
    run = results["parity"]
    assert len(run["losses"]) == 3
    assert run["losses"] == pytest.approx(run["reference"], rel=1e-5)
    assert set(run["grad_error"]) == {"vision", "decoder", "expert"}
    assert all(error < 1e-5 for error in run["grad_error"].values()), run["grad_error"]


@pytest.mark.slow
@pytest.mark.distributed
def test_hf_weights_load_into_tp_x_fsdp_like_one_process(results):
    run = results["hf"]
    assert run["max_logit_diff"] < 1e-4
    assert run["loss"] == pytest.approx(run["reference"], rel=1e-5)
