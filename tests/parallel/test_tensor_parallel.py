"""Tensor parallelism (TP=2, gloo) against one process: losses over several steps and every gradient by
component in both fusions, the placements TP leaves, and DCP checkpoints moved between TP=2 and FSDP.
One torchrun launch runs tp_checks.py; these tests assert on what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed_helper import REPO_ROOT, checked_values

SCRIPT = Path(__file__).with_name("tp_checks.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return checked_values(SCRIPT, tmp_path_factory.mktemp("tp"), timeout=600)


@pytest.mark.distributed
@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_tp2_trains_like_one_process(results, fusion):
    run = results[fusion]
    assert len(run["losses"]) == 4
    assert run["losses"] == pytest.approx(run["reference"], rel=1e-5)


@pytest.mark.distributed
@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_tp2_gradients_of_every_component_match(results, fusion):
    errors = results[fusion]["grad_error"]
    assert set(errors) == {"vision", "decoder", "expert"}
    assert all(error < 1e-5 for error in errors.values()), errors


@pytest.mark.distributed
def test_tp_splits_layers_and_replicates_the_rest(results):
    placed = results["placements"]
    sharded, replicated = set(placed["sharded"]), set(placed["replicated"])
    layer = "vlm.layers.0."
    for name in ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1",
                 "expert.attention.wq", "expert.attention.wo", "expert.feed_forward.w2"):
        assert f"{layer}{name}.weight" in sharded, name
    for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj", "mlp.linear_fc1"):
        assert f"vlm.vision_encoder.blocks.0.{name}.weight" in sharded, name
    for name in ("vlm.layers.0.attention_norm.weight", "vlm.layers.0.attention.q_norm.weight", "vlm.norm.weight",
                 "expert.heads.action_in_proj.weight", "vlm.vision_encoder.merger.linear_fc1.weight"):
        assert name in replicated, name
    # Every parameter is a DTensor on the TP mesh (one optimizer / clipping / DCP path for all).
    assert placed["plain"] == []
    assert placed["local_params"] < 0.8 * placed["total_params"]


@pytest.mark.distributed
@pytest.mark.parametrize("direction", ["tp_to_fsdp", "fsdp_to_tp"])
def test_dcp_checkpoint_moves_between_tp_and_fsdp(results, direction):
    run = results["dcp"][direction]
    assert run["loaded"] == pytest.approx(run["saved"], rel=1e-6)


@pytest.mark.distributed
def test_hf_weights_load_into_tp_like_one_process(results):
    run = results["hf"]
    assert run["max_logit_diff"] < 1e-4
    assert run["loss"] == pytest.approx(run["reference"], rel=1e-5)


PLANNED = """
[model]
flavor = "debug"
[action_expert]
action_horizon = 4
max_action_dim = 6
max_state_dim = 5
[parallelism]
tensor_parallel_degree = 2
"""


def planner(tmp_path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "plan.toml"
    config.write_text(PLANNED)
    return subprocess.run([sys.executable, "-m", "torchtitan_vla.parallel.plan", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


@pytest.mark.distributed
def test_planner_predicts_the_measured_tp_shards(results, tmp_path):
    proc = planner(tmp_path, "--world-size", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    ranks = json.loads(proc.stdout)["ranks"]
    measured = results["placements"]
    for rank in ranks:
        assert rank["local_params"] == measured["local_params"]
        assert rank["params"] == 4 * measured["local_params"]
        assert rank["optimizer"] == 4 * measured["local_optimizer_state"]


@pytest.mark.parametrize("args, culprit", [
    (["--world-size", "3"], "world size 3 is not divisible"),
    (["--world-size", "4", "--parallelism.tensor_parallel_degree=4"], "exceeds the 2 KV heads"),
])
def test_planner_refuses_impossible_layouts_in_one_line(tmp_path, args, culprit):
    proc = planner(tmp_path, *args)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:") and culprit in proc.stderr
