"""scripts/check_fast_decoding.py through the real data pipeline and a real export: greedy decoding from the
prompt serving builds continues exactly what the FAST loss trains (its first token is the training
forward's argmax), for any weights; a policy without FAST tokens is refused."""

from __future__ import annotations

import json

import pytest

from tests.scripts.test_gpu_check import load_script
from torchtitan_vla.tools.debug_policy import export_debug_policy


def test_greedy_decoding_agrees_with_the_training_forward(tmp_path):
    export = export_debug_policy(tmp_path, ["cam.top"], state_dim=3, action_dim=2, action_decoding="fast")
    out = tmp_path / "check.json"
    assert load_script("check_fast_decoding").main(["--policy", str(export), "--data", str(tmp_path / "dataset"),
                                                    "--samples", "4", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["greedy_agrees_with_teacher_forced"] == 1.0
    assert 0.0 <= report["teacher_forced_accuracy"] <= 1.0 and report["samples"] == 4


def test_a_policy_without_fast_tokens_is_refused(tmp_path, capsys):
    export = export_debug_policy(tmp_path, ["cam.top"], state_dim=3, action_dim=2)
    with pytest.raises(SystemExit):
        load_script("check_fast_decoding").main(["--policy", str(export), "--data", str(tmp_path / "dataset")])
    assert "no FAST tokenizer" in capsys.readouterr().err
