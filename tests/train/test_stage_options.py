"""A stage's training-time model options (``[training]`` is stage-level) reach ``forward`` in that stage:
knowledge insulation switched on by a later stage stops the flow loss's gradient at the VLM, verified on
the real tiny VLA through the trainer's own option mapping and ``forward_backward``."""

from __future__ import annotations

import pytest

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.config import load_config, resolve_stages
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.trainer import forward_options, loss_weights

TOML = """
[[curriculum.stages]]
name = "cotrain"
steps = 1
[[curriculum.stages]]
name = "insulated"
steps = 1
[curriculum.stages.training]
knowledge_insulation = true
flow_time_alpha = 2.0
action_loss_weight = 0.5
"""


def _vlm_and_expert_grads(stage_config) -> tuple[float, float]:
    vla = tiny_vla()
    batch = make_batch(vla, batch_size=2)
    batch.labels[:] = -100  # no text loss: whatever reaches the VLM comes from the flow loss
    forward_backward(vla, [batch], weights=loss_weights(stage_config), options=forward_options(stage_config),
                     dp_mesh=None)
    parts = vla.components()
    vlm = sum(float(p.grad.abs().sum()) for name in ("vision", "decoder") for p in parts[name].parameters()
              if p.grad is not None)
    expert = sum(float(p.grad.abs().sum()) for p in parts["expert"].parameters() if p.grad is not None)
    return vlm, expert


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "stages.toml"
    path.write_text(TOML)
    return {s.name: s.config for s in resolve_stages(load_config(str(path)))}


def test_stage_options_follow_the_stage(stages):
    first, second = forward_options(stages["cotrain"]), forward_options(stages["insulated"])
    assert not first.knowledge_insulation and second.knowledge_insulation
    assert first.flow_time.alpha == 1.5 and second.flow_time.alpha == 2.0
    assert loss_weights(stages["insulated"]).action == 0.5 and loss_weights(stages["cotrain"]).action == 1.0


def test_knowledge_insulation_switched_on_by_a_stage_stops_the_flow_gradient_at_the_vlm(stages):
    vlm, expert = _vlm_and_expert_grads(stages["cotrain"])
    assert vlm > 0 and expert > 0
    vlm, expert = _vlm_and_expert_grads(stages["insulated"])
    assert vlm == 0 and expert > 0
