"""Every normalised action chunk of a LeRobot source, exactly as training builds them (``data/robot.py``):
the source's action transform (picked dimensions, delta actions), its normalisation statistics, chunks of
``horizon`` steps whose steps past an episode's end repeat its last action. Tools that fit something to
the model's action targets (``scripts/fit_fast_tokenizer.py``) read them here, without cameras or prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .action_transform import ActionTransform
from .lerobot import DEFAULT_TOLERANCE_S, LeRobotReader
from .robot import chunk_rows, frame_rows, source_normalizers


@dataclass
class SourceChunks:
    chunks: np.ndarray
    """(N, H, D) float32 normalised chunks, one per frame, D the source's action width after its transform."""
    episode: np.ndarray
    """(N,) the dataset's episode index of each chunk (to hold whole episodes out)."""
    reader: LeRobotReader


def source_action_chunks(src, horizon: int, tolerance_s: float = DEFAULT_TOLERANCE_S) -> SourceChunks:
    """The normalised action chunk at every frame of the LeRobot ``DataSource`` ``src``."""
    reader = LeRobotReader(src.path, src.state_key, src.action_key, camera_keys=None, episodes=src.episodes or None,
                           tolerance_s=tolerance_s)
    transform = ActionTransform.from_source(src)
    problems = transform.problems(reader.state.shape[1], reader.action.shape[1])
    if problems:
        raise ValueError(f"{reader.root}: {problems[0][0]} {problems[0][1]}")
    _, action_norm = source_normalizers(reader, transform, src.normalization, src.stats_path)
    rows, last = frame_rows(reader)
    actions = transform.to_model(reader.state[rows][:, None, :], reader.action[chunk_rows(rows, last, horizon)])
    if not np.isfinite(actions).all():
        bad = int(rows[~np.isfinite(actions).all(axis=(1, 2))][0])
        ep = next(e for e in reader.episodes if e.start <= bad < e.start + e.length)
        raise ValueError(f"{reader.where(ep, bad - ep.start)}: non-finite '{reader.action_key}' value in the "
                         f"{horizon}-step action chunk")
    episode = np.concatenate([np.full(ep.length, ep.index) for ep in reader.episodes])
    return SourceChunks(action_norm(actions), episode, reader)
