"""``Sample``: what every source (web text, interleaved documents, robot episodes) yields, and the
``Collator`` that pads samples to one length and stacks them into a ``Batch`` (data/batch.py, whose field
docstrings are the contract between the data pipeline and the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import get_worker_info

from torchtitan_vla.processing.chat import IGNORE_INDEX

from .batch import Batch


@dataclass
class Sample:
    input_ids: torch.Tensor
    """(S,) long token ids (several documents back to back when packed)."""
    labels: torch.Tensor
    """(S,) long, already shifted: the target of the prediction made at each position; -100 = no loss."""
    position_ids: torch.Tensor
    """(3, S) long MRoPE positions (temporal, height, width), restarting at every packed document."""
    doc_ids: torch.Tensor
    """(S,) long packed-document index of each token."""
    source_id: int
    """Index of the data source in the loader's ``source_names``."""
    pixel_values: list[torch.Tensor] = field(default_factory=list)
    """One (N_i, 1536) float32 patch tensor per image, in token order."""
    image_grid_thw: list[torch.Tensor] = field(default_factory=list)
    """One (3,) long grid per image."""
    state: np.ndarray | None = None
    """Robot: (max_state_dim,) float32 normalized and zero-padded state; None for web samples."""
    actions: np.ndarray | None = None
    """Robot: (H, max_action_dim) float32 normalized, zero-padded action chunk."""
    action_is_pad: np.ndarray | None = None
    """Robot: (H,) bool, True for chunk steps beyond the episode end."""
    action_dim_mask: np.ndarray | None = None
    """Robot: (max_action_dim,) bool, True for the dataset's real action dimensions."""
    fast_mask: torch.Tensor | None = None
    """Robot with FAST tokens: (S,) bool, True at the FAST action segment (``Batch.fast_mask``)."""
    skipped: np.ndarray | None = None
    """(n_sources,) int64 samples skipped per source since the previous sample of this stream."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class Collator:
    """Pads samples to a common length (``max_seq_len``, or the longest sample without ``pad_to_max_seq_len``)
    and stacks them into a ``Batch``."""

    def __init__(self, pad_id: int, max_seq_len: int, action_horizon: int, max_action_dim: int,
                 max_state_dim: int, num_sources: int, pad_to_max_seq_len: bool = True):
        self.pad_id = pad_id
        self.max_seq_len = max_seq_len
        self.action_horizon = action_horizon
        self.max_action_dim = max_action_dim
        self.max_state_dim = max_state_dim
        self.num_sources = num_sources
        self.pad_to_max_seq_len = pad_to_max_seq_len

    def __call__(self, samples: list[Sample]) -> Batch:
        too_long = [len(s) for s in samples if len(s) > self.max_seq_len]
        if too_long:
            raise ValueError(f"sample of {too_long[0]} tokens exceeds data.max_seq_len={self.max_seq_len}")
        length = self.max_seq_len if self.pad_to_max_seq_len else max(len(s) for s in samples)
        b, h = len(samples), self.action_horizon
        input_ids = torch.full((b, length), self.pad_id, dtype=torch.long)
        labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(b, length, dtype=torch.bool)
        position_ids = torch.zeros(3, b, length, dtype=torch.long)
        doc_ids = torch.full((b, length), -1, dtype=torch.long)
        state = torch.zeros(b, self.max_state_dim)
        actions = torch.zeros(b, h, self.max_action_dim)
        action_is_pad = torch.ones(b, h, dtype=torch.bool)
        action_dim_mask = torch.zeros(b, self.max_action_dim, dtype=torch.bool)
        has_actions = torch.zeros(b, dtype=torch.bool)
        fast_mask = torch.zeros(b, length, dtype=torch.bool) if any(s.fast_mask is not None for s in samples) else None
        skipped = torch.zeros(self.num_sources, dtype=torch.long)
        for i, s in enumerate(samples):
            n = len(s)
            input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = s.input_ids, s.labels, True
            position_ids[:, i, :n], doc_ids[i, :n] = s.position_ids, s.doc_ids
            if s.actions is not None:
                state[i] = torch.from_numpy(s.state)
                actions[i] = torch.from_numpy(s.actions)
                action_is_pad[i] = torch.from_numpy(s.action_is_pad)
                action_dim_mask[i] = torch.from_numpy(s.action_dim_mask)
                has_actions[i] = True
            if s.fast_mask is not None:
                fast_mask[i, :n] = s.fast_mask
            if s.skipped is not None:
                skipped += torch.from_numpy(s.skipped)
        pixels = [p for s in samples for p in s.pixel_values]
        grids = [g for s in samples for g in s.image_grid_thw]
        pixel_values = None
        if pixels:
            pixel_values = torch.empty(0) if get_worker_info() is None else _shared_empty(pixels)
            pixel_values = torch.cat(pixels, out=pixel_values)
        return Batch(
            input_ids=input_ids,
            labels=labels,
            attention_mask=attention_mask,
            position_ids=position_ids,
            doc_ids=doc_ids,
            pixel_values=pixel_values,
            image_grid_thw=torch.stack(grids) if grids else None,
            state=state,
            actions=actions,
            action_is_pad=action_is_pad,
            action_dim_mask=action_dim_mask,
            has_actions=has_actions,
            fast_mask=fast_mask,
            source_id=torch.tensor([s.source_id for s in samples], dtype=torch.long),
            skipped=skipped,
        )


def _shared_empty(parts: list[torch.Tensor]) -> torch.Tensor:
    """An empty tensor backed by shared memory, for ``torch.cat(parts, out=...)`` in a loader worker: the
    batch then reaches the training process without the copy into shared memory that sending a
    normal tensor makes (the image patches are most of a robot batch's bytes); torch's default_collate
    does the same."""
    numel = sum(p.numel() for p in parts)
    storage = parts[0].untyped_storage()._new_shared(numel * parts[0].element_size())
    return torch.empty(0, dtype=parts[0].dtype).set_(storage).resize_(0)  # cat resizes it within the storage
