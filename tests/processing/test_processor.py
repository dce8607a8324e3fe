"""Image/video pre-processing against transformers 5.23 (the PIL image processor with Qwen3-VL settings)."""

from __future__ import annotations

import importlib
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from torchtitan_vla.processing import processor as P

transformers = pytest.importorskip("transformers")
from transformers import Qwen2VLImageProcessorPil  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize  # noqa: E402
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

# The real module: ``from transformers.models.qwen3_vl import video_processing_qwen3_vl`` hands out a
# placeholder without torchvision, while the functions used here (sampling, resize rule, patchify) need none.
hf_video = importlib.import_module("transformers.models.qwen3_vl.video_processing_qwen3_vl")


def hf_image_processor(min_pixels=P.IMAGE_MIN_PIXELS, max_pixels=P.IMAGE_MAX_PIXELS):
    """transformers' PIL Qwen2-VL image processor configured as Qwen3-VL's hub preprocessor_config.json."""
    return Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "height,width,min_pixels,max_pixels",
    [
        (8, 8, P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS),  # tiny: upscaled to the minimum budget
        (37, 53, P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS),  # odd sizes
        (480, 640, P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS),  # already a multiple of 32
        (1000, 90, P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS),  # tall
        (90, 1000, P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS),  # wide
        (700, 900, 4096, 200_000),  # large for its budget: downscaled
        (61, 47, 4096, 200_000),  # qwen-vl-utils style small minimum: rounded, not upscaled
    ],
)
def test_image_matches_transformers(height, width, min_pixels, max_pixels):
    image = random_image(height, width)
    ref = hf_image_processor(min_pixels, max_pixels)(images=[Image.fromarray(image)], return_tensors="pt")
    pixel_values, grid = P.preprocess_image(image, min_pixels=min_pixels, max_pixels=max_pixels)
    assert grid.dtype == torch.long and grid.tolist() == ref["image_grid_thw"][0].tolist()
    assert pixel_values.dtype == torch.float32 and pixel_values.shape == ref["pixel_values"].shape
    assert pixel_values.shape[1] == P.PATCH_DIM == 1536
    torch.testing.assert_close(pixel_values, ref["pixel_values"], rtol=0, atol=1e-6)
    # Same number of <|image_pad|> tokens as the transformers processor would insert.
    assert int(grid.prod()) // 4 == int(ref["image_grid_thw"][0].prod()) // 4


def test_pil_inputs_with_alpha_and_grayscale_match_transformers():
    rgba = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 4), dtype=np.uint8), mode="RGBA")
    gray = Image.fromarray(random_image(40, 90)[:, :, 0], mode="L")
    for image in (rgba, gray):
        ref = hf_image_processor()(images=[image], return_tensors="pt")
        pixel_values, grid = P.preprocess_image(image)
        assert grid.tolist() == ref["image_grid_thw"][0].tolist()
        torch.testing.assert_close(pixel_values, ref["pixel_values"], rtol=0, atol=1e-6)


def test_smart_resize_matches_transformers():
    rng = np.random.default_rng(2)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 5000, (300, 2)) if max(h, w) / min(h, w) <= 200]
    sizes += [(48, 48), (16, 16 * 150), (4200, 4200), (80, 112)]  # .5 rounding cases and a >16M-pixel image
    for budget in ((P.IMAGE_MIN_PIXELS, P.IMAGE_MAX_PIXELS), (4096, 1_000_000)):
        for h, w in sizes:
            assert P.smart_resize(h, w, 32, *budget) == hf_smart_resize(h, w, 32, *budget), (h, w, budget)
    assert P.smart_resize(4200, 4200) == (4096, 4096)  # downscaled into the 16M-pixel budget


def test_batched_images_concatenate_in_order():
    images = [random_image(64, 96, 0), random_image(100, 50, 1), random_image(64, 96, 2)]
    ref = hf_image_processor()(images=[Image.fromarray(i) for i in images], return_tensors="pt")
    pixel_values, grids = P.preprocess_images(images)
    assert grids.tolist() == ref["image_grid_thw"].tolist()
    torch.testing.assert_close(pixel_values, ref["pixel_values"], rtol=0, atol=1e-6)
    singles = [P.preprocess_image(i) for i in images]
    torch.testing.assert_close(pixel_values, torch.cat([pv for pv, _ in singles]), rtol=0, atol=0)


def test_robot_frames_fast_path_matches_transformers_and_is_cheap():
    cameras = np.stack([random_image(224, 224, seed) for seed in range(3)])  # (3, H, W, 3) uint8
    pixel_values, grids = P.preprocess_images(cameras, resize_to=(224, 224))
    # 224 = 7 * 32, so transformers keeps the size once its minimum budget allows it.
    ref = hf_image_processor(min_pixels=224 * 224)(images=[Image.fromarray(c) for c in cameras], return_tensors="pt")
    assert grids.tolist() == ref["image_grid_thw"].tolist() == [[1, 14, 14]] * 3
    torch.testing.assert_close(pixel_values, ref["pixel_values"], rtol=0, atol=1e-6)

    # A resize to a fixed size is PIL's bicubic, as transformers' processor does it.
    small = random_image(96, 128)
    pv, grid = P.preprocess_image(small, resize_to=(64, 96))
    resized = np.asarray(Image.fromarray(small).resize((96, 64), Image.Resampling.BICUBIC))
    ref_small = hf_image_processor(min_pixels=64 * 96)(images=[Image.fromarray(resized)], return_tensors="pt")
    torch.testing.assert_close(pv, ref_small["pixel_values"], rtol=0, atol=1e-6)
    assert grid.tolist() == [1, 4, 6]

    # The data loader calls this for every camera of every sample: it must stay far below a step's time.
    P.preprocess_images(cameras, resize_to=(224, 224))
    start = time.perf_counter()
    for _ in range(20):
        P.preprocess_images(cameras, resize_to=(224, 224))
    per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.05, f"3 cameras took {per_call * 1e3:.1f} ms"


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (np.zeros((32, 32, 3), np.float32), ValueError, "uint8"),
        (np.zeros((32, 32, 4), np.uint8), ValueError, r"\(H, W, 3\)"),
        ("not an image", TypeError, "PIL image"),
        (np.zeros((2, 500, 3), np.uint8), ValueError, "aspect ratio"),
    ],
)
def test_bad_images_are_rejected(bad, error, match):
    with pytest.raises(error, match=match):
        P.preprocess_image(bad)


def test_bad_resize_to_is_rejected():
    with pytest.raises(ValueError, match="multiples of 32"):
        P.preprocess_image(random_image(64, 64), resize_to=(64, 60))
    with pytest.raises(ValueError, match="no images"):
        P.preprocess_images([])


# --- videos -------------------------------------------------------------------------------------------


def hf_sample_frames(total, video_fps, sample_fps, min_frames=4, max_frames=768):
    """transformers' Qwen3VLVideoProcessor.sample_frames (its class needs torchvision; the method does not)."""
    owner = SimpleNamespace(fps=2, min_frames=min_frames, max_frames=max_frames)
    metadata = VideoMetadata(total_num_frames=total, fps=video_fps)
    return hf_video.Qwen3VLVideoProcessor.sample_frames(owner, metadata, fps=sample_fps)


def test_frame_sampling_matches_transformers():
    for total in (1, 3, 4, 10, 31, 48, 61, 300, 2000):
        for video_fps in (5.0, 10.0, 24.0, 29.97, 30.0, 60.0):
            for sample_fps in (1.0, 2.0):
                ours = P.sample_frame_indices(total, video_fps, sample_fps)
                np.testing.assert_array_equal(ours, hf_sample_frames(total, video_fps, sample_fps))
    np.testing.assert_array_equal(
        P.sample_frame_indices(20000, 30.0, 2.0, 4, 16), hf_sample_frames(20000, 30.0, 2.0, 4, 16)
    )


def test_video_resize_and_timestamps_match_transformers():
    for frames, h, w in [(2, 20, 700), (4, 480, 640), (7, 31, 45), (16, 1080, 1920), (768, 720, 1280)]:
        for budget in ((P.VIDEO_MIN_PIXELS, P.VIDEO_MAX_PIXELS), (128 * 32 * 32, 32 * 32 * 768)):
            ours = P.smart_resize_video(frames, h, w, 2, 32, *budget)
            assert ours == hf_video.smart_resize(frames, h, w, 2, 32, *budget), (frames, h, w, budget)
    for indices, fps in [([0, 4, 7, 11], 6.0), ([0, 3, 6, 9, 12], 30.0), ([5], 24.0)]:
        ours = P.temporal_patch_timestamps([i / fps for i in indices])
        assert ours == Qwen3VLProcessor._calculate_timestamps(None, list(indices), fps, 2)


@pytest.mark.parametrize("n_frames", [6, 5])
def test_video_patchify_matches_transformers(n_frames):
    frames = np.stack([random_image(64, 96, seed) for seed in range(n_frames)])
    pixel_values, grid, stamps = P.preprocess_video(frames, video_fps=4.0)
    # 64x96 is already a valid size in the video budget, so no resampling happens on either side.
    assert P.smart_resize_video(n_frames, 64, 96) == (64, 96)
    normalized = torch.from_numpy(P._NORMALIZE_LUT[frames]).permute(0, 3, 1, 2)[None]  # (1, T, C, H, W)
    owner = SimpleNamespace()
    ref, grid_t, grid_h, grid_w = hf_video.Qwen3VLVideoProcessor.patchify(owner, normalized, 16, 2, 2)
    assert grid.tolist() == [grid_t, grid_h, grid_w] == [3, 4, 6]
    torch.testing.assert_close(pixel_values, ref[0], rtol=0, atol=0)
    assert stamps == Qwen3VLProcessor._calculate_timestamps(None, list(range(n_frames)), 4.0, 2)


def test_video_sampling_from_a_decoded_clip():
    clip = np.stack([np.full((64, 64, 3), i, np.uint8) for i in range(90)])  # 3 s at 30 fps, frame i = value i
    pixel_values, grid, stamps = P.preprocess_video(clip, video_fps=30.0, sample_fps=2.0)
    kept = hf_sample_frames(90, 30.0, 2.0)  # 6 frames
    assert grid.tolist()[0] == len(kept) // 2 == len(stamps)
    assert stamps == Qwen3VLProcessor._calculate_timestamps(None, list(kept), 30.0, 2)
    # The frames actually used are the sampled ones (their constant value identifies them).
    first_patch_rows = pixel_values.view(grid[0], -1, 3, 2, 16, 16)[:, 0, 0, :, 0, 0]
    expected = torch.from_numpy(P._NORMALIZE_LUT[np.asarray(kept)]).view(-1, 2)
    torch.testing.assert_close(first_patch_rows, expected, rtol=0, atol=0)


def test_video_with_explicit_timestamps_and_fixed_size():
    frames = [random_image(48, 80, seed) for seed in range(3)]
    pixel_values, grid, stamps = P.preprocess_video(frames, timestamps=[0.0, 0.5, 1.0], resize_to=(64, 96))
    assert grid.tolist() == [2, 4, 6] and pixel_values.shape == (2 * 24, 1536)
    assert stamps == [0.25, 1.0]  # the odd last frame is repeated: its pair's mean is its own time


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one"),
        ({"timestamps": [0.0, 1.0], "video_fps": 2.0}, "exactly one"),
        ({"timestamps": [0.0]}, "2 frames but 1 timestamps"),
        ({"timestamps": [0.0, 1.0], "sample_fps": 2.0}, "needs video_fps"),
        ({"video_fps": 0.0}, "positive"),
    ],
)
def test_bad_video_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P.preprocess_video([random_image(32, 32), random_image(32, 32)], **kwargs)


def test_bad_video_frames_are_rejected():
    with pytest.raises(ValueError, match="same size"):
        P.preprocess_video([random_image(32, 32), random_image(64, 32)], video_fps=1.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        P.preprocess_video([random_image(32, 32)], video_fps=1.0)
