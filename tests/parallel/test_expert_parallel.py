"""Expert parallelism (EP=2, gloo) against one process on the tiny MoE VLA with deliberately uneven routing:
losses over several steps and gradients (with and without activation checkpointing), TP=2 splitting the
experts over its ranks, the expert shards,
DCP checkpoints moved EP=2 -> FSDP -> EP=2, the HF read/write path, and the planner's figures and refusals.
One torchrun launch runs ep_checks.py; these tests assert on what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.distributed_helper import checked_values
from tests.parallel.test_tensor_parallel import planner

SCRIPT = Path(__file__).with_name("ep_checks.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return checked_values(SCRIPT, tmp_path_factory.mktemp("ep"), timeout=600)


def _assert_trains_like_one_process(got: dict) -> None:
    """The same losses over the steps and the same gradients, by group of parameters, as one process."""
    assert got["losses"] == pytest.approx(got["reference"], rel=1e-5)
    assert set(got["grad_error"]) == {"experts", "router", "rest"}
    assert all(error < 1e-5 for error in got["grad_error"].values()), got["grad_error"]


@pytest.mark.distributed
@pytest.mark.parametrize("run", ["parity", "parity_ac"])
def test_ep2_trains_like_one_process_with_uneven_routing(results, run):
    got = results[run]
    busy, idle = got["routed_rows"]
    assert busy > 1.5 * idle, got["routed_rows"]  # the all-to-all splits are far from even
    assert len(got["losses"]) == 4
    _assert_trains_like_one_process(got)


@pytest.mark.distributed
def test_tp2_splits_the_experts_and_trains_like_one_process(results):
    got = results["tp_experts"]
    assert got["expert_local_rows"] == [4]  # 8 experts over 2 TP ranks, not replicated
    _assert_trains_like_one_process(got)


@pytest.mark.distributed
def test_experts_are_split_by_expert_over_ep(results):
    shards = results["shards"]
    assert shards["expert_mesh_dims"] == [["dp_shard_mod_ep", "ep"]]
    assert shards["expert_local_rows"] == [shards["num_experts"] // 2]


@pytest.mark.distributed
@pytest.mark.parametrize("direction", ["ep_to_fsdp", "fsdp_to_ep"])
def test_dcp_checkpoint_moves_between_ep_and_fsdp(results, direction):
    run = results["dcp"][direction]
    assert run["loaded"] == pytest.approx(run["saved"], rel=1e-6)


@pytest.mark.distributed
def test_hf_moe_checkpoint_reads_and_writes_under_ep(results):
    hf = results["hf"]
    assert hf["expert_keys"] == 4  # gate_up_proj and down_proj of two MoE layers
    assert hf["max_logit_diff"] == 0.0
    assert hf["same_keys"] and hf["max_rewrite_diff"] == 0.0


EP_PLAN = ("--model.flavor=debug-moe", "--parallelism.tensor_parallel_degree=1")


@pytest.mark.distributed
def test_planner_predicts_the_measured_ep_shards(results, tmp_path):
    proc = planner(tmp_path, "--world-size", "2", "--json", *EP_PLAN, "--parallelism.expert_parallel_degree=2")
    assert proc.returncode == 0, proc.stderr
    measured = results["shards"]
    for rank in json.loads(proc.stdout)["ranks"]:
        assert rank["local_params"] == measured["local_params"]
        assert rank["params"] == 4 * measured["local_params"]
        assert rank["optimizer"] == 4 * measured["local_optimizer_state"]


@pytest.mark.parametrize("args, culprit", [
    (["--world-size", "16", "--parallelism.expert_parallel_degree=16"], "exceeds the 8 experts"),
    (["--world-size", "2", "--model.flavor=debug", "--parallelism.expert_parallel_degree=2"], "needs an MoE flavor"),
    (["--world-size", "6", "--parallelism.expert_parallel_degree=4"], "does not divide the data-parallel shard degree 6"),
    (["--world-size", "16", "--parallelism.tensor_parallel_degree=2", "--parallelism.expert_parallel_degree=8"],
     "expert_parallel_degree=8 x tensor_parallel_degree=2 exceeds the 8 experts"),
])
def test_planner_refuses_impossible_ep_layouts_in_one_line(tmp_path, args, culprit):
    proc = planner(tmp_path, *EP_PLAN, *args)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and culprit in proc.stderr
