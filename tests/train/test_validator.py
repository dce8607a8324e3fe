"""The validator owns its loader (built once per stage) and rewinds it: every validation of a stage sees the
same samples and noise, and the training RNG streams are untouched (so resume stays exact)."""

from __future__ import annotations

import pytest
import torch

from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader, write_lerobot_dataset
from torchtitan_vla.models.vla import VLA, ForwardOptions
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.tools.synthetic_data import synthetic_episodes
from torchtitan_vla.train.loss import LossWeights
from torchtitan_vla.train.validator import Validator


@pytest.mark.parametrize("workers", [0, 1])
def test_validations_repeat_exactly_and_leave_the_training_rng_alone(tmp_path, workers):
    episodes = synthetic_episodes(num_episodes=2, length=10, cameras=("observation.images.main",), size=32, seed=1)
    root = write_lerobot_dataset(str(tmp_path / "robot"), episodes, fps=10, version="v3.0")
    source = DataSource(name="robot", kind="lerobot", path=root)
    cfg = make_config([source], num_workers=workers)
    cfg.data.validation_mixture = {"robot": 1.0}
    cfg.training.validation_steps = 2
    tokenizer = build_debug_tokenizer(tmp_path / "tokenizer.json")
    model = VLA.from_config(cfg.model, cfg.action_expert, tokenizer)
    validator = Validator(build_dataloader, cfg, tokenizer, 0, 1, torch.device("cpu"), None)

    torch.manual_seed(5)
    rng_before = torch.get_rng_state()
    first = validator.run(model, LossWeights(), ForwardOptions())
    assert torch.equal(torch.get_rng_state(), rng_before)
    second = validator.run(model, LossWeights(), ForwardOptions())
    assert first == second
    assert first["val/loss/action"] > 0
