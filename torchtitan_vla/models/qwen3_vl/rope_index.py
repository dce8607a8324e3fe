"""MRoPE position ids (T, H, W rows) for text, images and video frames: Qwen3-VL's ``get_rope_index``.

Plain torch on CPU, importable without building a model, so the data path can compute positions in its
workers. Conventions (those of transformers 5.x):

* positions are computed over the non-padding tokens only; padding slots get position 0;
* a text token advances every row by one; an image/frame run of ``gh x gw`` merged tokens starts all rows
  at the current position ``cur``, puts (cur, cur + row, cur + col) on each token, then moves ``cur`` on by
  ``max(gh, gw)``;
* a video grid (t, h, w) is t separate frames (t = 1 each): frames are separated by timestamp text in the
  prompt, which is what orders them in time;
* ``rope_delta = max position + 1 - number of real tokens``: a decoded token k (0-based) after a prompt
  of n real tokens sits at position ``n + k + rope_delta`` on all rows;
* packed sequences: with ``doc_ids``, positions restart at 0 at every document boundary.
"""

from __future__ import annotations

import torch

TEXT, IMAGE, VIDEO = 0, 1, 2


def get_rope_index(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    image_token_id: int = 151655,
    video_token_id: int = 151656,
    spatial_merge_size: int = 2,
    doc_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(position_ids (3, B, S) long, rope_deltas (B, 1) long) for a batch of token ids.

    ``image_grid_thw`` / ``video_grid_thw`` hold the grids of all samples in batch order; placeholder runs
    are matched to them in order of appearance.
    """
    bsz, seq = input_ids.shape
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    has_vision = image_grid_thw is not None or video_grid_thw is not None
    if not has_vision and doc_ids is None:
        pos = (valid.long().cumsum(-1) - 1).clamp(min=0).masked_fill(~valid, 0)
        deltas = pos.max(dim=-1).values + 1 - valid.sum(-1)
        return pos.unsqueeze(0).expand(3, -1, -1).clone(), deltas.unsqueeze(1)

    grids = {
        IMAGE: _frames(image_grid_thw, split_time=False),
        VIDEO: _frames(video_grid_thw, split_time=True),
    }
    used = {IMAGE: 0, VIDEO: 0}
    types = torch.zeros_like(input_ids)
    types[input_ids == image_token_id] = IMAGE
    types[input_ids == video_token_id] = VIDEO

    position_ids = torch.zeros(3, bsz, seq, dtype=torch.long)
    deltas = torch.zeros(bsz, 1, dtype=torch.long)
    for b in range(bsz):
        row_types = types[b][valid[b]].cpu()
        row_docs = None if doc_ids is None else doc_ids[b][valid[b]].cpu()
        pieces, cur = [], 0
        for kind, start, end, new_doc in _runs(row_types, row_docs):
            if new_doc:
                cur = 0
            length = end - start
            if kind == TEXT:
                pieces.append(torch.arange(cur, cur + length).expand(3, -1))
                cur += length
                continue
            while length > 0:  # consecutive frames/images without separators form one run
                if used[kind] >= len(grids[kind]):
                    name = "image_grid_thw" if kind == IMAGE else "video_grid_thw"
                    raise ValueError(f"sample {b} has more {_name(kind)} placeholder tokens than {name} describes")
                t, gh, gw = grids[kind][used[kind]]
                gh, gw = gh // spatial_merge_size, gw // spatial_merge_size
                used[kind] += 1
                n = t * gh * gw
                if n > length:
                    raise ValueError(
                        f"sample {b}: a run of {length} {_name(kind)} placeholder tokens ends inside a grid that "
                        f"needs {n} (grid t={t}, h={gh * spatial_merge_size}, w={gw * spatial_merge_size})"
                    )
                ti = torch.arange(t).view(t, 1, 1).expand(t, gh, gw).reshape(-1)
                hi = torch.arange(gh).view(1, gh, 1).expand(t, gh, gw).reshape(-1)
                wi = torch.arange(gw).view(1, 1, gw).expand(t, gh, gw).reshape(-1)
                pieces.append(torch.stack((ti, hi, wi)) + cur)
                cur += max(gh, gw)
                length -= n
        row = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
        position_ids[:, b, valid[b].cpu()] = row
        if row.numel():
            deltas[b, 0] = row.max() + 1 - row.shape[1]
    for kind, name in ((IMAGE, "image_grid_thw"), (VIDEO, "video_grid_thw")):
        if used[kind] != len(grids[kind]):
            raise ValueError(
                f"{name} describes {len(grids[kind])} {_name(kind)} frames but the prompts hold placeholders "
                f"for only {used[kind]}"
            )
    return position_ids.to(input_ids.device), deltas.to(input_ids.device)


def _name(kind: int) -> str:
    return "image" if kind == IMAGE else "video"


def _frames(grid_thw: torch.Tensor | None, split_time: bool) -> list[tuple[int, int, int]]:
    if grid_thw is None:
        return []
    rows = [tuple(int(v) for v in r) for r in grid_thw.reshape(-1, 3).tolist()]
    if not split_time:
        return rows
    return [(1, h, w) for t, h, w in rows for _ in range(t)]


def _runs(types: torch.Tensor, docs: torch.Tensor | None):
    """Yield (kind, start, end, starts_new_document) for maximal runs of one token kind within one doc."""
    n = types.numel()
    if n == 0:
        return
    change = types[1:] != types[:-1]
    doc_change = torch.zeros_like(change) if docs is None else docs[1:] != docs[:-1]
    starts = [0] + (torch.nonzero(change | doc_change).flatten() + 1).tolist()
    doc_starts = {0} | set((torch.nonzero(doc_change).flatten() + 1).tolist())
    ends = starts[1:] + [n]
    for s, e in zip(starts, ends):
        yield int(types[s]), s, e, s in doc_starts
