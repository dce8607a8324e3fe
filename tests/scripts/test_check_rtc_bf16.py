"""Real-time chunking in bfloat16 on the CPU (scripts/check_rtc_bf16.py's comparison): a bf16 copy of the
model guides and prefix-conditions with the prefix KV cache, joint and late fusion, on a batch whose
samples have different delays, and stays close to float32."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from tests.scripts.test_gpu_check import load_script

BF16_TOLERANCE = 0.05
"""Largest bf16 - fp32 action difference, relative to the std of what the fp32 flow moved (measured:
0.003-0.007 on the debug flavor, 5 Euler steps)."""


@pytest.mark.parametrize("fusion", ["joint", "late"])
def test_rtc_in_bfloat16_is_finite_frozen_exactly_and_close_to_float32(fusion):
    check = load_script("check_rtc_bf16")
    vla = tiny_vla(action_horizon=8, fusion=fusion).eval()
    low = copy.deepcopy(vla).to(torch.bfloat16)
    assert next(low.expert.parameters()).dtype == torch.bfloat16
    batch = make_batch(vla, action_dims=(6, 6))
    torch.manual_seed(1)
    with torch.no_grad():
        prev = vla.sample_actions(batch, num_steps=5)
        report = check.compare(vla, low, batch, prev, torch.tensor([2, 4]), execution_horizon=2, num_steps=5)
    for mode in ("guided", "prefix"):
        assert report[mode]["finite"] and report[mode]["frozen_exact"], report
        assert 0 < report[mode]["rel_max_diff"] < BF16_TOLERANCE, report  # 0 would mean nothing ran in bf16
    assert report["guided"]["guided_over_free"] < 0.5, report  # guidance still pulls in bf16
