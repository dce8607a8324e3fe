"""Bad batches and bad configurations fail with errors that name the culprit."""

import dataclasses

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.config.model import ActionExpert, Model
from torchtitan_vla.models.vla import VLA


@pytest.fixture(scope="module")
def vla():
    return tiny_vla()


def test_chunk_longer_than_horizon(vla):
    batch = make_batch(vla)
    longer = torch.zeros(2, 5, 6)
    with pytest.raises(ValueError, match=r"batch.actions holds chunks of 5 steps.*action_horizon = 4"):
        vla(dataclasses.replace(batch, actions=longer, action_is_pad=torch.zeros(2, 5, dtype=torch.bool)))


def test_action_dim_above_max(vla):
    batch = make_batch(vla)
    with pytest.raises(ValueError, match=r"7 action dims.*max_action_dim = 6"):
        vla(dataclasses.replace(batch, actions=torch.zeros(2, 4, 7), action_dim_mask=torch.ones(2, 7, dtype=torch.bool)))


def test_state_dim_above_max(vla):
    with pytest.raises(ValueError, match=r"batch.state has 9 dims.*max_state_dim = 5"):
        vla(dataclasses.replace(make_batch(vla), state=torch.zeros(2, 9)))


def test_nan_in_actions(vla):
    batch = make_batch(vla)
    actions = batch.actions.clone()
    actions[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"batch.actions contains NaN/Inf in samples \[1\]"):
        vla(dataclasses.replace(batch, actions=actions))


@pytest.mark.parametrize("call", ["forward", "sample"])
def test_nan_in_state(vla, call):
    batch = make_batch(vla)
    state = batch.state.clone()
    state[0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"batch.state contains NaN/Inf in samples \[0\]"):
        if call == "forward":
            vla(dataclasses.replace(batch, state=state))
        else:
            vla.sample_actions(dataclasses.replace(batch, state=state))


def test_shorter_chunks_and_fewer_dims_are_padded(vla):
    batch = make_batch(vla)
    short = dataclasses.replace(batch, actions=batch.actions[:, :3, :4], action_is_pad=batch.action_is_pad[:, :3],
                                action_dim_mask=batch.action_dim_mask[:, :4])
    noise, time = torch.randn(2, 4, 6), torch.tensor([0.3, 0.6])
    padded = dataclasses.replace(short, actions=torch.nn.functional.pad(short.actions, (0, 2, 0, 1)),
                                 action_is_pad=torch.nn.functional.pad(short.action_is_pad, (0, 1), value=True),
                                 action_dim_mask=torch.nn.functional.pad(short.action_dim_mask, (0, 2)))
    torch.testing.assert_close(vla(short, noise=noise, time=time).action, vla(padded, noise=noise, time=time).action)


def test_joint_expert_depth_must_match_the_decoder():
    """A fact of the architecture, not of the configuration's own types: the decoder's depth comes from the
    flavor or the HF config.json."""
    with pytest.raises(ValueError, match="action_expert.num_layers"):
        VLA.from_config(Model(flavor="debug"), ActionExpert(num_layers=3))


def test_lora_targets_that_match_no_linear_are_named():
    with pytest.raises(ValueError, match="lora_targets"):
        VLA.from_config(Model(flavor="debug", lora_rank=4, lora_targets=["q_proj"]), ActionExpert())
