"""Loader workers send still images as uint8 pixels (1/8 of the bytes) and the loader hands out exactly the
float32 patches the processor makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import torchtitan_vla.data.loader as loader_module
from tests.data.helpers import make_config
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.processing import processor as P


def test_compact_patches_expand_to_the_processors_float_patches():
    rng = np.random.default_rng(0)
    cameras = rng.integers(0, 256, (3, 96, 128, 3), dtype=np.uint8)
    floats, grid = P.preprocess_images(cameras, resize_to=(64, 96), resize_mode="pad")
    compact, compact_grid = P.preprocess_images(cameras, resize_to=(64, 96), resize_mode="pad", compact=True)
    assert compact.dtype == torch.uint8 and compact.shape == (floats.shape[0], P.COMPACT_PATCH_DIM)
    assert torch.equal(compact_grid, grid)
    assert torch.equal(torch.from_numpy(P.expand_compact_patches(compact.numpy())), floats)
    web = Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))  # smart_resize, not a fixed size
    floats, _ = P.preprocess_image(web, 64 * 64, 128 * 128)
    compact, _ = P.preprocess_image(web, 64 * 64, 128 * 128, compact=True)
    assert torch.equal(torch.from_numpy(P.expand_compact_patches(compact.numpy())), floats)
    assert compact.numel() * compact.element_size() * 8 == floats.numel() * floats.element_size()


def test_worker_batches_equal_float_batches(lerobot_roots, cc12m_root, obelics_root, tokenizer, monkeypatch):
    sources = [DataSource(name="robot", kind="lerobot", path=lerobot_roots["v3.0"]),
               DataSource(name="cc12m", kind="cc12m", path=cc12m_root),
               DataSource(name="obelics", kind="obelics", path=obelics_root)]
    cfg = make_config(sources, num_workers=2)

    def first_batches():
        it = iter(build_dataloader(cfg, tokenizer, 0, 1))
        return [next(it) for _ in range(3)]

    compact = first_batches()
    monkeypatch.setattr(loader_module, "PromptBuilder",
                        lambda tokenizer, data_cfg, compact_pixels: PromptBuilder(tokenizer, data_cfg))
    floats = first_batches()
    assert any(b.has_actions.any() for b in compact) and any((~b.has_actions).any() for b in compact)
    for got, want in zip(compact, floats):
        assert got.pixel_values.dtype == torch.float32 and got.pixel_values.shape[1] == P.PATCH_DIM
        for key, value in vars(want).items():
            assert value is None and getattr(got, key) is None or torch.equal(getattr(got, key), value), key


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_uses_compact_pixels_only_in_workers(lerobot_roots, tokenizer, workers, monkeypatch):
    made = []
    monkeypatch.setattr(loader_module, "PromptBuilder",
                        lambda *args, **kwargs: made.append(kwargs) or PromptBuilder(*args, **kwargs))
    build_dataloader(make_config([DataSource(name="robot", kind="lerobot", path=lerobot_roots["v3.0"])],
                                 num_workers=workers), tokenizer, 0, 1)
    assert made == [{"compact_pixels": workers > 0}]
