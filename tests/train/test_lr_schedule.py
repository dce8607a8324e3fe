import math

import pytest
import torch

from torchtitan_vla.config.training import LRSchedule
from torchtitan_vla.train.lr_schedule import StageLRScheduler, lr_multiplier


def test_warmup_then_cosine_reaches_the_floor_and_stays_there():
    cfg = LRSchedule(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)
    values = [lr_multiplier(cfg, s, 20) for s in range(1, 31)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert max(values) <= 1.0
    assert values[19] == pytest.approx(0.1)
    assert all(v == pytest.approx(0.1) for v in values[19:]), "past the end the LR holds its final value"
    assert all(a >= b for a, b in zip(values[4:], values[5:])), "cosine decay is monotone"


@pytest.mark.parametrize("kind", ["cosine", "linear", "wsd", "constant"])
def test_never_negative_past_the_end(kind):
    cfg = LRSchedule(kind=kind, warmup_steps=3, min_lr_ratio=0.0)
    assert all(lr_multiplier(cfg, s, 10) >= 0.0 for s in range(1, 100))


def test_wsd_is_flat_then_decays_in_the_last_fraction():
    cfg = LRSchedule(kind="wsd", warmup_steps=2, min_lr_ratio=0.0, decay_ratio=0.25)
    values = [lr_multiplier(cfg, s, 18) for s in range(1, 19)]
    assert values[2:14] == [1.0] * 12
    assert values[14] < 1.0 and values[-1] == 0.0


def test_scheduler_keeps_each_groups_peak_and_resumes_from_its_step():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "peak_lr": 1.0, "lr": 1.0}, {"params": [p2], "peak_lr": 0.1, "lr": 0.1}])
    cfg = LRSchedule(kind="cosine", warmup_steps=0)
    sched = StageLRScheduler(opt, cfg, total_steps=10)
    for _ in range(5):
        sched.step()
    # After 5 steps the groups hold the LR of step 6 (the next one to run).
    expected = 0.5 * (1 + math.cos(math.pi * 6 / 10))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([expected, 0.1 * expected])
    again = StageLRScheduler(opt, cfg, total_steps=10)
    again.load_state_dict(sched.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)
