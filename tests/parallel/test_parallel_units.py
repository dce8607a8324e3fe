"""Single-process tests of the parallel helpers: mesh degrees, AC modes, loss normalization, config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from parallel_standin import StandIn, standin_batch

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.parallel import ActivationCheckpoint, Parallelism
from torchtitan_vla.parallel import ParallelDims, apply_ac, normalize_loss, parallelize_vla
from torchtitan_vla.parallel.grad_norm import clip_grad_norm_


def _dims(replicate=1, shard=-1, tp=1, world=4):
    cfg = Parallelism(data_parallel_replicate_degree=replicate, data_parallel_shard_degree=shard, tensor_parallel_degree=tp)
    return ParallelDims.from_config(cfg, world_size=world, device_type="cpu")


def test_parallel_dims_fills_shard_degree_from_world_size():
    dims = _dims(replicate=2, shard=-1, world=8)
    assert (dims.dp_replicate, dims.dp_shard, dims.dp_world_size) == (2, 4, 8)
    assert dims.hsdp_enabled and dims.fsdp_enabled
    assert not _dims(world=1).fsdp_enabled


def test_parallel_dims_rejects_degrees_not_multiplying_to_world_size():
    with pytest.raises(ValueError, match=r"replicate_degree=2 x data_parallel_shard_degree=3 .* world size is 4"):
        _dims(replicate=2, shard=3, world=4)
    with pytest.raises(ValueError, match="world size 6 is not divisible by data_parallel_replicate_degree=4"):
        _dims(replicate=4, shard=-1, world=6)


def test_parallel_dims_tensor_parallel_is_reserved():
    with pytest.raises(ValueError, match="tensor_parallel_degree=2 is reserved"):
        _dims(tp=2, world=4)


def _grads(model, batch):
    out = model(batch)
    loss = out["text_loss_sum"] / out["text_tokens"] + out["action_loss_sum"] / out["action_elements"]
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode,option", [("full", "op"), ("selective", "op"), ("selective", "2")])
def test_activation_checkpointing_keeps_gradients_and_names(mode, option):
    torch.manual_seed(0)
    ref = StandIn()
    model = copy.deepcopy(ref)
    batch = standin_batch(2, seed=1)
    cfg = ActivationCheckpoint(mode=mode, selective_option=option)
    n = sum(apply_ac(model.blocks(c), cfg) for c in ("vision", "decoder", "expert"))
    assert n == (3 if option == "2" else 6)
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    expected, got = _grads(ref, batch), _grads(model, batch)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_bad_activation_checkpoint_settings_name_the_key():
    with pytest.raises(ValueError, match="activation_checkpoint.mode"):
        apply_ac([], ActivationCheckpoint(mode="partial"))
    with pytest.raises(ValueError, match="activation_checkpoint.selective_option"):
        apply_ac([], ActivationCheckpoint(mode="selective", selective_option="zero"))


def test_parallelize_single_process_validates_plan_settings():
    cfg = JobConfig()
    cfg.parallelism.vision_fsdp_unit = "layers"
    with pytest.raises(ValueError, match="parallelism.vision_fsdp_unit"):
        parallelize_vla(StandIn(), _dims(world=1), cfg)
    cfg = JobConfig()
    cfg.compile.components = ["decoder", "projector"]
    with pytest.raises(ValueError, match=r"compile.components has unknown components \['projector'\]"):
        parallelize_vla(StandIn(), _dims(world=1), cfg)


def test_normalize_loss_divides_by_counts_and_skips_empty_terms():
    sums = {"text": torch.tensor(6.0, requires_grad=True), "action": torch.tensor(3.0, requires_grad=True)}
    loss = normalize_loss(sums, {"text": torch.tensor(3.0), "action": torch.tensor(0.0)}, {"text": 0.5})
    assert loss.item() == pytest.approx(0.5 * 6 / 3 + 3.0)  # clamp(min=1) on an empty count
    loss.backward()
    assert sums["action"].grad is not None  # the empty term still takes part in backward
    with pytest.raises(ValueError, match=r"no count for loss terms \['action'\]"):
        normalize_loss(sums, {"text": torch.tensor(1.0)})


def test_clip_grad_norm_matches_torch_on_plain_tensors():
    torch.manual_seed(0)
    a, b = StandIn(), StandIn()
    b.load_state_dict(a.state_dict())
    batch = standin_batch(2, seed=3)
    _grads(a, batch), _grads(b, batch)
    expected = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.1)
    got = clip_grad_norm_(b.parameters(), 0.1)
    torch.testing.assert_close(got, expected)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad)


def test_sweep_points_are_valid_config_overrides():
    from torchtitan_vla.config import load_config
    from torchtitan_vla.parallel.fsdp import FSDPSettings
    from torchtitan_vla.parallel.sweep import sweep_points

    points = sweep_points(world_size=4)
    assert "hsdp2+ac_full" in points and "hsdp2+ac_full" not in sweep_points(world_size=2)
    for overrides in points.values():
        cfg = load_config(None, list(overrides.items())).config
        ParallelDims.from_config(cfg.parallelism, world_size=4, device_type="cpu")
        FSDPSettings(mesh=None, mp_policy=None, reshard_policy=cfg.parallelism.fsdp_reshard_after_forward)
        parallelize_vla(StandIn(), _dims(world=1), cfg)  # validates AC, compile and vision-unit settings
