"""Tiny VLAs and hand-built ``Batch``es for them (shared by the VLA tests and the distributed checks)."""

from __future__ import annotations

import pytest
import torch

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index
from torchtitan_vla.models.vla import VLA

GRID = (1, 4, 4)  # one image of 4x4 patches -> 4 merged tokens


def make_batch(
    vla: VLA,
    batch_size: int = 2,
    text_len: int = 5,
    padding: tuple[int, ...] = (0, 2),
    action_dims: tuple[int, ...] = (3, 2),
    steps: tuple[int, ...] | None = None,
    seed: int = 0,
) -> Batch:
    """Right-padded robot batch: [vision_start | 4 image pads | vision_end | text | pad]; sample i has
    ``action_dims[i]`` real action dims and ``steps[i]`` in-episode steps (default: the whole horizon)."""
    gen = torch.Generator().manual_seed(seed)
    args = vla.vlm.args
    cfg = vla.expert_cfg
    n_image = GRID[0] * GRID[1] * GRID[2] // 4
    length = 2 + n_image + text_len + max(padding)
    ids, valid = [], []
    for i in range(batch_size):
        text = torch.randint(0, 900, (text_len,), generator=gen).tolist()
        row = [args.vision_start_token_id] + [args.image_token_id] * n_image + [args.vision_end_token_id] + text
        real = len(row) - padding[i % len(padding)]
        row = row[:real] + [0] * (length - real)
        ids.append(row)
        valid.append([True] * real + [False] * (length - real))
    input_ids = torch.tensor(ids)
    attention_mask = torch.tensor(valid)
    grid = torch.tensor([GRID] * batch_size)
    position_ids, _ = get_rope_index(input_ids, grid, None, attention_mask, image_token_id=args.image_token_id,
                                     spatial_merge_size=args.vision.spatial_merge_size)
    labels = torch.full_like(input_ids, -100)
    text_start = 2 + n_image
    labels[:, text_start:-1] = input_ids[:, text_start + 1:]
    labels[~attention_mask] = -100
    labels[:, :-1][~attention_mask[:, 1:]] = -100
    horizon, max_dim = cfg.action_horizon, cfg.max_action_dim
    dim_mask = torch.zeros(batch_size, max_dim, dtype=torch.bool)
    is_pad = torch.zeros(batch_size, horizon, dtype=torch.bool)
    for i in range(batch_size):
        dim_mask[i, : action_dims[i % len(action_dims)]] = True
        if steps is not None:
            is_pad[i, steps[i % len(steps)]:] = True
    actions = torch.randn(batch_size, horizon, max_dim, generator=gen) * dim_mask[:, None, :] * ~is_pad[:, :, None]
    return Batch(
        input_ids=input_ids,
        labels=labels,
        attention_mask=attention_mask,
        position_ids=position_ids,
        doc_ids=torch.zeros_like(input_ids),
        pixel_values=torch.randn(batch_size * GRID[0] * GRID[1] * GRID[2], args.vision.patch_dim, generator=gen),
        image_grid_thw=grid,
        state=torch.randn(batch_size, cfg.max_state_dim, generator=gen),
        actions=actions,
        action_is_pad=is_pad,
        action_dim_mask=dim_mask,
        has_actions=torch.ones(batch_size, dtype=torch.bool),
        source_id=torch.zeros(batch_size, dtype=torch.long),
    )


def tiny_vla(**expert_overrides) -> VLA:
    """The debug VLA with a short horizon and few action/state dims (seconds on CPU)."""
    torch.manual_seed(0)
    defaults = dict(action_horizon=4, max_action_dim=6, max_state_dim=5)
    return VLA.build_debug(**{**defaults, **expert_overrides})


def overfit_vla(**expert_overrides) -> VLA:
    """The debug flavor cut to 2 decoder layers and 1 ViT block, for training-loop tests."""
    import dataclasses

    from torchtitan_vla.config.model import ActionExpert
    from torchtitan_vla.models.qwen3_vl.args import FLAVORS

    torch.manual_seed(0)
    debug = FLAVORS["debug"]
    args = debug.replace(text=dataclasses.replace(debug.text, n_layers=2),
                         vision=dataclasses.replace(debug.vision, depth=1, deepstack_visual_indexes=(0,)))
    vla = VLA(args, ActionExpert(**expert_overrides))
    vla.init_weights()
    return vla


@pytest.fixture
def single_thread():
    """Tiny models run fastest on one thread, and much faster than two on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
