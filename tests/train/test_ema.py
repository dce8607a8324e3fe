import pytest
import torch

from tests.train.standin import StandInVLA
from torchtitan_vla.train.ema import EMA


def test_ema_tracks_trainable_weights_and_swaps_in_for_export():
    model = StandInVLA(horizon=4, action_dim=4, state_dim=3)
    model.init_weights()
    model.set_trainable(["expert"])
    ema = EMA(model, decay=0.75)
    assert all(n.startswith("expert.") for n in ema.names), "frozen parts need no average"
    w = model.expert.action_out.weight
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    ema.update()
    averaged = ema.state_dict()["expert.action_out.weight"]
    assert torch.allclose(averaged, start + 0.25)
    with ema.swapped_in():
        assert torch.allclose(w, start + 0.25)
    assert torch.allclose(w, start + 1.0), "training weights come back after export"
    with pytest.raises(ValueError, match="training.ema_decay"):
        EMA(model, decay=1.0)
