"""A tool that writes a tiny real policy export, for tests, benchmarks and trying a client against the server.

A freshly initialised ``debug``-flavor VLA, written by the trainer's own exporter, with cameras and
normalization statistics from a small random LeRobot dataset (so the export is exactly what a training
job produces, only untrained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data.write_lerobot import write_lerobot_dataset
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.train.export import export_policy


def export_debug_policy(folder: Path, camera_keys: list[str], state_dim: int, action_dim: int,
                        horizon: int = 4, image_size: int = 64, seed: int = 0, dataset: str | None = None,
                        num_steps: int = 2, subtasks: bool = False, fast_tokenizer_path: str = "",
                        action_decoding: str = "") -> Path:
    """Export to ``folder/policy`` and return that path. The cameras and statistics come from ``dataset`` (a
    LeRobot dataset with these cameras and widths), else from 2 random episodes written to ``folder/dataset``.
    ``subtasks``: the export is of a policy trained with subtask annotations (it generates a subtask before
    its actions); its random episodes carry per-frame subtask labels.
    ``fast_tokenizer_path``: a FAST tokenizer file the export carries (``model.fast_tokenizer_path``).
    ``action_decoding`` (``flow`` or ``fast``): how the export serves; without ``fast_tokenizer_path`` a FAST
    tokenizer is fitted on random smooth chunks (``folder/fast_tokenizer.json``)."""
    rng = np.random.default_rng(seed)
    if dataset is None:
        episodes = [{
            "frames": {cam: rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8) for cam in camera_keys},
            "state": rng.normal(3.0, 2.0, (6, state_dim)).astype(np.float32),
            "action": rng.normal(-5.0, 4.0, (6, action_dim)).astype(np.float32),
            "task": "pick up the red cube",
            **({"subtask": ["reach the cube"] * 3 + ["grasp the cube"] * 3} if subtasks else {}),
        } for _ in range(2)]
        dataset = write_lerobot_dataset(str(folder / "dataset"), episodes, fps=10)

    cfg = JobConfig()
    cfg.model.flavor = "debug"
    cfg.model.fast_tokenizer_path = fast_tokenizer_path
    cfg.action_expert.action_horizon = horizon
    cfg.action_expert.max_action_dim = max(8, action_dim)
    cfg.action_expert.max_state_dim = max(8, state_dim)
    cfg.action_expert.num_inference_steps = num_steps
    cfg.data.image_size = image_size
    cfg.data.max_seq_len = 256
    cfg.data.sources = [DataSource(name="robot", kind="lerobot", path=dataset, camera_keys=list(camera_keys),
                                   subtask_key="subtask" if subtasks else "")]
    cfg.action_expert.subtask_max_tokens = 6
    if action_decoding:
        if not fast_tokenizer_path:
            chunks = np.cumsum(rng.normal(0.0, 0.3, (256, horizon, action_dim)), axis=1)
            FastTokenizer.fit(chunks, vocab_size=64).save(folder / "fast_tokenizer.json")
            cfg.model.fast_tokenizer_path = str(folder / "fast_tokenizer.json")
        cfg.model.action_decoding = action_decoding
    tokenizer_file = folder / "tokenizer.json"
    tokenizer = build_debug_tokenizer(tokenizer_file)
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, cfg.action_expert, tokenizer)
    model.to_empty(device="cpu")
    model.init_weights()
    export_policy(model, cfg, folder / "policy", str(tokenizer_file), "float32")
    return folder / "policy"
