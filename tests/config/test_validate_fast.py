"""Load-time checks of the FAST settings: the tokenizer file must exist, be one, and fit the job."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_refused, run_train

from torchtitan_vla.config import load_stages
from torchtitan_vla.processing.fast import FastTokenizer


def _fast_file(folder, horizon: int, action_dim: int) -> str:
    chunks = np.cumsum(np.random.default_rng(0).normal(0, 0.2, (64, horizon, action_dim)), axis=1)
    path = folder / f"fast_{horizon}x{action_dim}.json"
    FastTokenizer.fit(chunks, vocab_size=48).save(path)
    return str(path)


def test_a_matching_tokenizer_is_accepted(job, tmp_path):
    path = _fast_file(tmp_path, 4, 2)
    _, stages = load_stages(job.toml(), [("model.fast_tokenizer_path", path), ("training.fast_loss_weight", "1.0"),
                                         ("model.action_decoding", "fast")])
    assert stages[-1].config.training.fast_loss_weight == 1.0


@pytest.mark.parametrize("shape, cli, fragments", [
    (None, ("--training.fast_loss_weight=1",), ["'training.fast_loss_weight' needs model.fast_tokenizer_path"]),
    (None, ("--model.action_decoding=fast",), ["'model.action_decoding' needs model.fast_tokenizer_path"]),
    (None, ("--model.fast_tokenizer_path=/no/fast.json",), ["'model.fast_tokenizer_path' = '/no/fast.json' does not exist"]),
    ((5, 2), (), ["encodes 5-step chunks, action_expert.action_horizon is 4"]),
    ((4, 3), (), ["stage 'cotrain'", "encodes 3-dim actions", "gives 2 (source"]),
])
def test_fast_problems_are_refused(job, tmp_path, shape, cli, fragments):
    extra = () if shape is None else (f"--model.fast_tokenizer_path={_fast_file(tmp_path, *shape)}",)
    path = job.toml()
    assert_refused(run_train("--config", path, *extra, *cli, "--print-config"), *fragments)


def test_a_file_that_is_no_tokenizer_is_refused(job, tmp_path):
    (tmp_path / "bad.json").write_text("{}")
    assert_refused(run_train("--config", job.toml(), f"--model.fast_tokenizer_path={tmp_path / 'bad.json'}",
                             "--print-config"), "'model.fast_tokenizer_path'", "cannot be read", "not a FAST tokenizer file")


def test_the_2b_pi05_recipe_resolves():
    from conftest import REPO

    from torchtitan_vla.config import load_config, resolve_stages

    path = str(REPO / "train_configs" / "qwen3vl_2b" / "pi05_knowledge_insulation.toml")
    assert_refused(run_train("--config", path, "--print-config"), "'data.sources[0].path' = '/data/cc12m' does not exist")
    stages = {s.name: s.config for s in resolve_stages(load_config(path))}
    assert stages["vlm_pretrain"].training.fast_loss_weight == 0.0
    for name in ("cotrain", "finetune"):
        training = stages[name].training
        assert training.fast_loss_weight > 0 and training.knowledge_insulation and training.action_loss_weight > 0
    assert stages["cotrain"].model.fast_tokenizer_path and stages["cotrain"].action_expert.state_mode == "discrete"
