"""Qwen3-VL image and video pre-processing: resize, normalise, patchify (PIL + numpy + torch only).

Numerically this is transformers' PIL image processor (``Qwen2VLImageProcessorPil``) with Qwen3-VL's hub
settings (patch 16, temporal patch 2, merge 2, mean/std 0.5, rescale 1/255, bicubic): the same sizes, the
same bits. Videos follow ``Qwen3VLVideoProcessor``'s rules (frame sampling, whole-clip pixel budget,
temporal pairs, per-pair timestamps) but resize with PIL like the images, where transformers' video path
uses torchvision; so video pixels differ from transformers' by resampling noise, sizes do not.

``pixel_values`` rows are in spatial-merge-block order ((block_row, block_col, in_row, in_col), so every 4
consecutive rows form one LLM token) and each row is (channel, temporal, 16, 16) = 1536 values. A still
image is duplicated in time to fill the temporal pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image

PATCH_SIZE = 16
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE
PATCH_DIM = 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE
COMPACT_PATCH_DIM = 3 * PATCH_SIZE * PATCH_SIZE
"""A still image's patch as uint8 pixels of one frame (``compact=True``): 1/8 of the float32 patch's bytes."""

# Pixel budgets from Qwen3-VL's hub preprocessor configs (not the Qwen2-VL class defaults).
IMAGE_MIN_PIXELS = 65536
IMAGE_MAX_PIXELS = 16777216
# For videos the budget covers the whole clip (all frames together).
VIDEO_MIN_PIXELS = 4096
VIDEO_MAX_PIXELS = 25165824
VIDEO_SAMPLE_FPS = 2.0
VIDEO_MIN_FRAMES = 4
VIDEO_MAX_FRAMES = 768

_MAX_ASPECT_RATIO = 200

# uint8 -> normalised float32, computed with transformers' exact operations (float64 rescale by 1/255,
# cast to float32, then (x - 0.5) / 0.5 in float32) so a table lookup reproduces its bits.
_NORMALIZE_LUT = ((np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)


def _check_aspect_ratio(height: int, width: int) -> None:
    if min(height, width) <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if max(height, width) / min(height, width) > _MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio of a {height}x{width} image exceeds {_MAX_ASPECT_RATIO}; crop or pad it first")


def _fit_pixel_budget(
    height: int,
    width: int,
    factor: int,
    min_pixels: int,
    max_pixels: int,
    num_frames: int = 1,
    rounded_frames: int = 1,
) -> tuple[int, int]:
    """Per-frame (height, width), multiples of ``factor``, whose clip area fits [min_pixels, max_pixels].

    As in HF, the budget check counts ``rounded_frames`` (the frame count rounded to temporal patches) and
    the rescale counts ``num_frames``; both are 1 for a still image.
    """
    # Python's round (banker's rounding on .5) is part of the spec: it decides sizes exactly as HF does.
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if rounded_frames * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif rounded_frames * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = IMAGE_MIN_PIXELS,
    max_pixels: int = IMAGE_MAX_PIXELS,
) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor``, area within [min_pixels, max_pixels], aspect kept."""
    _check_aspect_ratio(height, width)
    return _fit_pixel_budget(height, width, factor, min_pixels, max_pixels)


def smart_resize_video(
    num_frames: int,
    height: int,
    width: int,
    temporal_factor: int = TEMPORAL_PATCH_SIZE,
    factor: int = FACTOR,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> tuple[int, int]:
    """Per-frame target size of a clip whose pixel budget covers all ``num_frames`` frames together."""
    if num_frames < temporal_factor:
        raise ValueError(f"a video needs at least {temporal_factor} frames, got {num_frames}")
    if height < factor or width < factor:
        # Frames smaller than one merged patch are first scaled up so the short side reaches ``factor``.
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    _check_aspect_ratio(height, width)
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    return _fit_pixel_budget(height, width, factor, min_pixels, max_pixels, num_frames, t_bar)


def sample_frame_indices(
    total_frames: int,
    video_fps: float,
    sample_fps: float = VIDEO_SAMPLE_FPS,
    min_frames: int = VIDEO_MIN_FRAMES,
    max_frames: int = VIDEO_MAX_FRAMES,
) -> np.ndarray:
    """Indices of the frames Qwen3-VL keeps from a ``total_frames`` clip recorded at ``video_fps``.

    ``sample_fps`` frames per second of video, clamped to [min_frames, max_frames] and to the clip length,
    spread uniformly from the first to the last frame.
    """
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    if video_fps <= 0 or sample_fps <= 0:
        raise ValueError(f"video_fps and sample_fps must be positive, got {video_fps} and {sample_fps}")
    num = int(total_frames / video_fps * sample_fps)
    num = min(max(num, min_frames), max_frames, total_frames)
    return np.linspace(0, total_frames - 1, num).round().astype(np.int64)


def temporal_patch_timestamps(
    frame_timestamps: Sequence[float], temporal_patch_size: int = TEMPORAL_PATCH_SIZE
) -> list[float]:
    """One timestamp per temporal patch: the mean of its first and last frame's time (last frame repeated)."""
    stamps = [float(t) for t in frame_timestamps]
    if not stamps:
        raise ValueError("frame_timestamps is empty")
    stamps += [stamps[-1]] * (-len(stamps) % temporal_patch_size)
    return [(stamps[i] + stamps[i + temporal_patch_size - 1]) / 2 for i in range(0, len(stamps), temporal_patch_size)]


def _to_rgb_array(image) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image (alpha composited on white, as HF does) or a uint8 array/tensor."""
    if isinstance(image, Image.Image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL image or a uint8 HWC array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image array must be uint8 (H, W, 3), got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image array must have shape (H, W, 3), got {tuple(image.shape)}")
    return image


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an (H, W, 3) uint8 array with PIL; a no-op when the size already matches."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.BICUBIC))


def resize_with_pad(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """openpi's robot-camera convention: scale to fit inside ``size`` keeping the aspect ratio, then pad
    with zeros (black) centred; the rounding of fit and offsets follows openpi's ``resize_with_pad``."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    ratio = max(image.shape[1] / width, image.shape[0] / height)
    fit_h, fit_w = int(image.shape[0] / ratio), int(image.shape[1] / ratio)
    resized = _resize(image, (fit_h, fit_w))
    top, left = (height - fit_h) // 2, (width - fit_w) // 2
    out = np.zeros((height, width, image.shape[2]), np.uint8)
    out[top:top + fit_h, left:left + fit_w] = resized
    return out


def resize_robot_image(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """A robot camera frame at the model's fixed size: ``pad`` (aspect kept) or ``stretch``. Training
    and serving both resize here (through ``preprocess_images(..., resize_mode=)``)."""
    if mode == "pad":
        return resize_with_pad(image, size)
    if mode == "stretch":
        return _resize(image, size)
    raise ValueError(f"resize mode must be 'pad' or 'stretch', got {mode!r}")


def _check_resize_to(resize_to: tuple[int, int]) -> tuple[int, int]:
    if len(resize_to) != 2 or any(int(s) != s or s <= 0 or s % FACTOR for s in resize_to):
        raise ValueError(f"resize_to must be (height, width), positive multiples of {FACTOR}; got {resize_to}")
    return int(resize_to[0]), int(resize_to[1])


def _patchify(groups: np.ndarray) -> np.ndarray:
    """(G, temporal, H, W, 3) uint8 -> (G * H/16 * W/16, 1536) float32 normalised, merge-block row order.

    Rows go merge block by merge block (the 2x2 patches the vision merger fuses are consecutive), and each
    row is one patch flattened channel-major, then time, then pixel row and column (Conv3d's weight order).
    """
    rows = rearrange(
        groups,
        "g t (bh m1 py) (bw m2 px) c -> (g bh bw m1 m2) (c t py px)",
        m1=MERGE_SIZE, m2=MERGE_SIZE, py=PATCH_SIZE, px=PATCH_SIZE,
    )
    # Normalising after the reshuffle touches 1-byte values during the copies and yields the output once.
    return _NORMALIZE_LUT[rows]


def _compact_stills(images: np.ndarray) -> np.ndarray:
    """Still images (n, H, W, 3) uint8 -> (N, COMPACT_PATCH_DIM) uint8: ``_patchify``'s rows, channel-major
    then pixel row and column, before normalisation and without the temporal repeat."""
    rows = rearrange(images, "g (bh m1 py) (bw m2 px) c -> (g bh bw m1 m2) (c py px)",
                     m1=MERGE_SIZE, m2=MERGE_SIZE, py=PATCH_SIZE, px=PATCH_SIZE)
    return np.ascontiguousarray(rows)


def expand_compact_patches(compact: np.ndarray) -> np.ndarray:
    """(N, COMPACT_PATCH_DIM) uint8 -> (N, PATCH_DIM) float32, bit-identical to the patches of the same
    stills: the table lookup done once per pixel and copied into both temporal slots."""
    out = np.empty((compact.shape[0], 3, TEMPORAL_PATCH_SIZE, PATCH_SIZE * PATCH_SIZE), np.float32)
    out[:] = _NORMALIZE_LUT[compact.reshape(-1, 3, 1, PATCH_SIZE * PATCH_SIZE)]
    return out.reshape(compact.shape[0], PATCH_DIM)


def _patchify_stills(images: np.ndarray, compact: bool = False) -> np.ndarray:
    """``_patchify`` of still images (n, H, W, 3), each repeated over the temporal patch (the float32
    conversion dominated robot samples); ``compact``: the uint8 rows of ``_compact_stills``."""
    rows = _compact_stills(images)
    return rows if compact else expand_compact_patches(rows)


def _grid(t: int, height: int, width: int) -> torch.Tensor:
    return torch.tensor([t, height // PATCH_SIZE, width // PATCH_SIZE], dtype=torch.long)


def preprocess_images(
    images: Sequence | np.ndarray,
    min_pixels: int = IMAGE_MIN_PIXELS,
    max_pixels: int = IMAGE_MAX_PIXELS,
    resize_to: tuple[int, int] | None = None,
    resize_mode: str = "stretch",
    compact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several images -> (pixel_values (sum N_i, 1536) float32, image_grid_thw (n_images, 3) long).

    ``images`` is a list of PIL images / uint8 HWC arrays, or one (n, H, W, 3) uint8 array (e.g. a robot's
    camera frames). Images that end up the same size are patchified in one vectorised pass. With
    ``resize_to``, ``resize_mode`` (``pad`` or ``stretch``, ``resize_robot_image``) says how they get there.
    ``compact``: pixel_values are (sum N_i, 768) uint8 instead (``expand_compact_patches`` gives the float32
    patches), so a data-loader worker sends 1/8 of the bytes to the training process.
    """
    if len(images) == 0:
        raise ValueError("preprocess_images got no images")
    if resize_to is not None:
        resize_to = _check_resize_to(resize_to)
    resized = []
    for image in images:
        rgb = _to_rgb_array(image)
        if resize_to is not None:
            resized.append(resize_robot_image(rgb, resize_to, resize_mode))
        else:
            resized.append(_resize(rgb, smart_resize(rgb.shape[0], rgb.shape[1], FACTOR, min_pixels, max_pixels)))
    grid = torch.stack([_grid(1, r.shape[0], r.shape[1]) for r in resized])
    if len({r.shape for r in resized}) == 1:
        pixel_values = _patchify_stills(np.stack(resized), compact)
    else:
        pixel_values = np.concatenate([_patchify_stills(r[None], compact) for r in resized])
    return torch.from_numpy(pixel_values), grid


def preprocess_image(
    image,
    min_pixels: int = IMAGE_MIN_PIXELS,
    max_pixels: int = IMAGE_MAX_PIXELS,
    resize_to: tuple[int, int] | None = None,
    compact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image -> (pixel_values (N, 1536) float32, grid_thw (3,) long = [1, H/16, W/16]).

    ``resize_to`` (height, width), multiples of 32, replaces smart_resize: a fixed size for robot frames.
    ``compact``: uint8 pixel_values (N, 768), as in ``preprocess_images``.
    """
    pixel_values, grid = preprocess_images([image], min_pixels, max_pixels, resize_to, compact=compact)
    return pixel_values, grid[0]


def preprocess_video(
    frames: Sequence | np.ndarray,
    timestamps: Sequence[float] | None = None,
    video_fps: float | None = None,
    sample_fps: float | None = None,
    min_frames: int = VIDEO_MIN_FRAMES,
    max_frames: int = VIDEO_MAX_FRAMES,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
    resize_to: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Video frames -> (pixel_values (N, 1536) float32, video_grid_thw (3,) long, per-temporal-patch seconds).

    Give the frames' times either as ``timestamps`` (seconds, one per frame) or as the clip's
    ``video_fps`` (frame i is at i / video_fps). With ``sample_fps`` (needs ``video_fps``) the frames are
    first subsampled by Qwen3-VL's rule (:func:`sample_frame_indices`); without it they are used as given
    (already sampled by the decoder). Consecutive frames form temporal pairs (an odd last frame is
    repeated); each pair's timestamp is rendered in the prompt as ``<t seconds>``.
    """
    if (timestamps is None) == (video_fps is None):
        raise ValueError("preprocess_video needs exactly one of timestamps= or video_fps=")
    if video_fps is not None:
        if video_fps <= 0:
            raise ValueError(f"video_fps must be positive, got {video_fps}")
        timestamps = [i / video_fps for i in range(len(frames))]
    if len(timestamps) != len(frames):
        raise ValueError(f"got {len(frames)} frames but {len(timestamps)} timestamps")
    if sample_fps is not None:
        if video_fps is None:
            raise ValueError("sample_fps= needs video_fps= (the sampling rule counts frames per second of video)")
        keep = sample_frame_indices(len(frames), video_fps, sample_fps, min_frames, max_frames)
        frames = [frames[i] for i in keep]
        timestamps = [timestamps[i] for i in keep]

    rgb = [_to_rgb_array(f) for f in frames]
    if len({f.shape for f in rgb}) != 1:
        raise ValueError(f"video frames must all have the same size, got {sorted({f.shape for f in rgb})}")
    height, width = rgb[0].shape[:2]
    if resize_to is not None:
        size = _check_resize_to(resize_to)
    else:
        size = smart_resize_video(len(rgb), height, width, TEMPORAL_PATCH_SIZE, FACTOR, min_pixels, max_pixels)
    clip = np.stack([_resize(f, size) for f in rgb])
    if pad := -len(clip) % TEMPORAL_PATCH_SIZE:
        clip = np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])
    grid_t = len(clip) // TEMPORAL_PATCH_SIZE
    pixel_values = _patchify(clip.reshape(grid_t, TEMPORAL_PATCH_SIZE, *clip.shape[1:]))
    return torch.from_numpy(pixel_values), _grid(grid_t, *size), temporal_patch_timestamps(timestamps)
