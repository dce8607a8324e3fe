"""A tokenized document (one prompt, caption or interleaved web page) and packing documents into samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.qwen3_vl.rope_index import get_rope_index
from .sample import IGNORE_INDEX, Sample


@dataclass
class Document:
    input_ids: list[int]
    """Token ids; every image is ``<|vision_start|>`` + N x ``<|image_pad|>`` + ``<|vision_end|>``."""
    labels: list[int]
    """Already shifted targets (-100 = no loss); the last token of a document never has a target."""
    pixel_values: list[torch.Tensor] = field(default_factory=list)
    """(N_i, 1536) patches of each image, in order of appearance."""
    image_grid_thw: list[torch.Tensor] = field(default_factory=list)
    """(3,) grid of each image."""

    def __len__(self) -> int:
        return len(self.input_ids)

    def truncate(self, max_len: int, vision_start_id: int) -> Document | None:
        """The first ``max_len`` tokens, cut before any image that would not fit whole (None if nothing is left)."""
        if len(self) <= max_len:
            return self
        cut = max_len
        starts = [i for i, t in enumerate(self.input_ids) if t == vision_start_id]
        kept = 0
        for pos, grid in zip(starts, self.image_grid_thw):
            end = pos + 2 + int(grid.prod()) // 4  # start token, pads, end token
            if end > cut:
                cut = min(cut, pos)
                break
            kept += 1
        if cut == 0:
            return None
        labels = self.labels[:cut]
        labels[-1] = IGNORE_INDEX  # its target was the first dropped token
        return Document(self.input_ids[:cut], labels, self.pixel_values[:kept], self.image_grid_thw[:kept])

    def to_sample(self, source_id: int, image_token_id: int, **robot) -> Sample:
        return pack([self], source_id, image_token_id, **robot)


def pack(docs: list[Document], source_id: int, image_token_id: int, **robot) -> Sample:
    """Concatenate documents into one Sample with doc_ids and MRoPE positions restarting per document."""
    input_ids = torch.tensor([t for d in docs for t in d.input_ids], dtype=torch.long)
    labels = torch.tensor([t for d in docs for t in d.labels], dtype=torch.long)
    doc_ids = torch.cat([torch.full((len(d),), i, dtype=torch.long) for i, d in enumerate(docs)])
    pixel_values = [p for d in docs for p in d.pixel_values]
    grids = [g for d in docs for g in d.image_grid_thw]
    position_ids, _ = get_rope_index(
        input_ids[None],
        torch.stack(grids) if grids else None,
        image_token_id=image_token_id,
        doc_ids=doc_ids[None] if len(docs) > 1 else None,
    )
    return Sample(input_ids, labels, position_ids[:, 0], doc_ids, source_id, pixel_values, grids, **robot)


class Packer:
    """Greedy in-order packing: documents are appended while they fit, the first one that does not fit
    starts the next sample. No look-ahead buffer, so the read position alone is an exact resume point."""

    def __init__(self, max_len: int, vision_start_id: int, enabled: bool = True):
        self.max_len, self.vision_start_id, self.enabled = max_len, vision_start_id, enabled

    def fits(self, current: list[Document], doc: Document) -> bool:
        if not current:
            return True
        return self.enabled and sum(len(d) for d in current) + len(doc) <= self.max_len
