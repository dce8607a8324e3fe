"""A checkpoint written while a trainable component had no AdamW state yet (no gradient so far) loads,
and the resumed optimizer steps exactly as the uninterrupted one."""

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

from torchtitan_vla.train.checkpoint import ModelState, OptimizerState, load_into


def _model_and_optimizer():
    torch.manual_seed(0)
    model = nn.ModuleDict({"vlm": nn.Linear(4, 4), "expert": nn.Linear(4, 4)})
    return model, torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)


def _step(model, optimizer, expert: bool):
    x = torch.ones(2, 4)
    loss = model["vlm"](x).square().sum() + (model["expert"](x).square().sum() if expert else 0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _continue(model, optimizer):
    for _ in range(3):
        _step(model, optimizer, expert=True)
    return [p.detach().clone() for p in model.parameters()]


def _check_resume(tmp_path, save):
    model, optimizer = _model_and_optimizer()
    _step(model, optimizer, expert=False)  # the expert has had no gradient: AdamW has no state for it
    save(model, optimizer, tmp_path / "ckpt")
    expected = _continue(model, optimizer)

    resumed, resumed_optimizer = _model_and_optimizer()
    load_into(tmp_path / "ckpt", {"model": ModelState(resumed), "optimizer": OptimizerState(resumed, resumed_optimizer)})
    for got, want in zip(_continue(resumed, resumed_optimizer), expected):
        assert torch.equal(got, want)


def test_checkpoint_of_an_older_version_without_the_state_loads(tmp_path):
    def save_without_state(model, optimizer, path):  # what a save did before the state was initialised
        dcp.save({"model": ModelState(model).state_dict(), "optimizer": get_optimizer_state_dict(model, optimizer)},
                 checkpoint_id=str(path))
    _check_resume(tmp_path, save_without_state)


def test_new_saves_hold_every_trainable_parameter_and_resume_exactly(tmp_path):
    def save(model, optimizer, path):
        state = OptimizerState(model, optimizer).state_dict()
        assert {"expert.weight", "expert.bias"} <= set(state["state"])
        assert float(state["state"]["expert.weight"]["step"]) == 0.0
        dcp.save({"model": ModelState(model).state_dict(), "optimizer": state}, checkpoint_id=str(path))
    _check_resume(tmp_path, save)
