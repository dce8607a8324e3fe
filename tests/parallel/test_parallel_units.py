"""Single-process tests of the parallel helpers: mesh degrees, AC modes, gradient clipping."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.parallel.parallel_standin import StandIn, standin_batch
from torchtitan_vla.config.parallel import ActivationCheckpoint, Parallelism
from torchtitan_vla.parallel import ParallelDims, apply_ac
from torchtitan_vla.parallel.grad_norm import clip_grad_norm_


def _dims(replicate=1, shard=-1, world=4):
    cfg = Parallelism(data_parallel_replicate_degree=replicate, data_parallel_shard_degree=shard)
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


def _grads(model, batch):
    model(batch).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode,option", [("full", "op"), ("selective", "op"), ("selective", 2)])
def test_activation_checkpointing_keeps_gradients_and_names(mode, option):
    torch.manual_seed(0)
    ref = StandIn()
    model = copy.deepcopy(ref)
    batch = standin_batch(2, seed=1)
    cfg = ActivationCheckpoint(mode=mode, selective_option=option)
    n = sum(apply_ac(model.blocks(c), cfg) for c in ("vision", "decoder", "expert"))
    assert n == (3 if option == 2 else 6)
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref.named_parameters()]
    expected, got = _grads(ref, batch), _grads(model, batch)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


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


def _saved_tensors_of_joint_forward(vla, batch) -> int:
    """Tensors autograd keeps for backward during one training forward of the real tiny VLA."""
    count = [0]

    def pack(tensor):
        count[0] += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        vla(batch)
    return count[0]


def test_activation_checkpointing_covers_the_joint_layers_training_entry_point():
    """The VLA trains through ``JointLayer.forward_joint``, not ``forward``: checkpointing must wrap it."""
    from tests.models.vla.helpers import make_batch, tiny_vla

    vla = tiny_vla()
    batch = make_batch(vla, batch_size=2)
    plain = _saved_tensors_of_joint_forward(vla, batch)
    n = apply_ac(vla.blocks("decoder"), ActivationCheckpoint(mode="full"))
    assert n == len(vla.vlm.layers)
    checkpointed = _saved_tensors_of_joint_forward(vla, batch)
    assert checkpointed < plain / 2, (checkpointed, plain)
