"""Components with no work in a micro-batch (no images, no robot samples) under data parallelism: they
still run, contribute exactly zero, and FSDP's collectives match across ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed_helper import checked_values
from tests.models.vla.helpers import overfit_vla, single_thread  # noqa: F401
from tests.parallel.idle_checks import text_only_batch
from torchtitan_vla.parallel.parallelize import run_idle_components

SCRIPT = Path(__file__).with_name("idle_checks.py")


def _loss_and_grads(vla, batch):
    vla.zero_grad(set_to_none=True)
    out = vla(batch)
    (out.text.sum() + out.action.sum()).backward()
    return out, {n: p.grad for n, p in vla.named_parameters()}


@pytest.mark.usefixtures("single_thread")
def test_idle_components_run_and_contribute_exactly_zero():
    vla = overfit_vla(action_horizon=4, max_action_dim=6, max_state_dim=5)
    batch = text_only_batch(vla)
    skipped, skipped_grads = _loss_and_grads(vla, batch)
    run_idle_components(vla)
    assert not vla.skip_idle_expert and not vla.vlm.skip_idle_vision
    ran, grads = _loss_and_grads(vla, batch)

    assert torch.equal(ran.text, skipped.text)
    assert not ran.action.any()
    idle = [n for n, g in skipped_grads.items() if g is None]
    assert any("vision_encoder" in n for n in idle) and any("expert" in n for n in idle)
    # Now every idle parameter takes part in backward (so FSDP reduce-scatters it) with a zero gradient.
    assert all(grads[n] is not None and not grads[n].any() for n in idle)
    assert all(torch.equal(grads[n], g) for n, g in skipped_grads.items() if g is not None)


@pytest.mark.distributed
def test_text_only_rank_and_robot_image_rank_step_together(tmp_path):
    result = checked_values(SCRIPT, tmp_path, timeout=240)["idle"]
    assert result["runs_idle_components"]
    assert len(result["losses"]) == 2
    assert result["losses"] == pytest.approx(result["reference"], rel=1e-5)
