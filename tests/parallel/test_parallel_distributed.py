"""2-process gloo runs of the real tiny VLA: FSDP/HSDP parity with one process, AC gradients,
per-rank shares, frozen vision, mixed-mesh clipping and sharded HF loading (one torchrun launch).
The launched script measures; these tests assert on what it returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed_helper import checked_values

SCRIPT = Path(__file__).with_name("dist_checks.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return checked_values(SCRIPT, tmp_path_factory.mktemp("dist"), timeout=300)


@pytest.mark.distributed
@pytest.mark.parametrize("fusion, layout", [("parity", "replicate1_shard2"), ("parity", "replicate2_shard1"),
                                            ("late", "replicate1_shard2")])
def test_two_ranks_train_like_one_process(results, fusion, layout):
    run = results[fusion][layout]
    assert len(run["losses"]) == 5
    assert run["losses"] == pytest.approx(run["reference"], rel=1e-4)


@pytest.mark.distributed
def test_activation_checkpointing_changes_no_gradient(results):
    assert set(results["ac"]) == {"full_op", "selective_op", "selective_2"}
    assert all(error < 1e-5 for error in results["ac"].values()), results["ac"]


@pytest.mark.distributed
def test_each_rank_holds_half_of_parameters_and_optimizer_state(results):
    memory = results["memory"]
    total = memory["total_params"]
    for local, state in zip(memory["local_params"], memory["local_optimizer_state"]):
        assert local / total == pytest.approx(0.5, abs=0.01)
        assert state / (2 * total) == pytest.approx(0.5, abs=0.01)  # exp_avg + exp_avg_sq


@pytest.mark.distributed
def test_frozen_vision_is_sharded_unchanged_and_stateless(results):
    frozen = results["frozen"]
    assert frozen["vision_params"] > 0 and frozen["all_sharded"]
    assert frozen["changed"] == [] and frozen["with_state_or_grad"] == []
    assert frozen["trainable_without_state"] == 0


@pytest.mark.distributed
def test_gradient_norm_over_mixed_meshes_is_the_global_norm(results):
    norm = results["grad_norm"]
    assert norm["norm"] == pytest.approx(norm["expected"], rel=1e-6)
    assert norm["clipped_max_error"] < 1e-6


@pytest.mark.distributed
def test_sharded_hf_loading_gives_the_unsharded_logits(results):
    assert results["hf"]["max_logit_diff"] < 1e-5
