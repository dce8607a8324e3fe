"""Components with no work in a micro-batch (no images, no robot samples) under data parallelism: they
still run, contribute exactly zero, and FSDP's collectives match across ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from distributed_helper import run_torchrun

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "action_expert"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ae_helpers import overfit_vla, single_thread  # noqa: E402, F401
from idle_checks import text_only_batch  # noqa: E402

from torchtitan_vla.parallel.parallelize import run_idle_components  # noqa: E402

SCRIPT = Path(__file__).with_name("idle_checks.py")


def _loss_and_grads(vla, batch):
    vla.zero_grad(set_to_none=True)
    out = vla(batch)
    (out["text_loss_sum"] + out["action_loss_sum"]).backward()
    return out, {n: p.grad for n, p in vla.named_parameters()}


@pytest.mark.usefixtures("single_thread")
def test_idle_components_run_and_contribute_exactly_zero():
    vla = overfit_vla(action_horizon=4, max_action_dim=6, max_state_dim=5)
    batch = text_only_batch(vla)
    skipped, skipped_grads = _loss_and_grads(vla, batch)
    run_idle_components(vla)
    assert not vla.skip_idle_expert and not vla.vlm.skip_idle_vision
    ran, grads = _loss_and_grads(vla, batch)

    assert torch.equal(ran["text_loss_sum"], skipped["text_loss_sum"])
    assert ran["action_loss_sum"].item() == 0 and ran["action_elements"].item() == 0
    idle = [n for n, g in skipped_grads.items() if g is None]
    assert any("vision_encoder" in n for n in idle) and any("expert" in n for n in idle)
    # Now every idle parameter takes part in backward (so FSDP reduce-scatters it) with a zero gradient.
    assert all(grads[n] is not None and not grads[n].any() for n in idle)
    assert all(torch.equal(grads[n], g) for n, g in skipped_grads.items() if g is not None)


@pytest.mark.distributed
def test_text_only_rank_and_robot_image_rank_step_together():
    proc = run_torchrun(SCRIPT, nproc=2, timeout=240)
    assert "OK text-only web rank + robot image rank" in proc.stdout, proc.stdout
