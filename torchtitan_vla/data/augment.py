"""Robot image augmentation (openpi recipe) with PIL and numpy, one random draw per image.

Non-wrist cameras: random crop of 95% of each side, resized back, then rotation by up to +-5 degrees.
All cameras: brightness x U[0.7, 1.3], contrast x U[0.6, 1.4], saturation x U[0.5, 1.5].
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance


def augment_image(image: np.ndarray, rng: np.random.Generator, wrist: bool,
                  crop_scale: float = 0.95, max_degrees: float = 5.0) -> np.ndarray:
    """Augmented copy of a uint8 (H, W, 3) image, same size."""
    pil = Image.fromarray(image)
    width, height = pil.size
    if not wrist:
        crop_w, crop_h = int(round(width * crop_scale)), int(round(height * crop_scale))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        pil = pil.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BILINEAR)
        pil = pil.rotate(float(rng.uniform(-max_degrees, max_degrees)), resample=Image.BILINEAR)
    pil = ImageEnhance.Brightness(pil).enhance(float(rng.uniform(0.7, 1.3)))
    pil = ImageEnhance.Contrast(pil).enhance(float(rng.uniform(0.6, 1.4)))
    pil = ImageEnhance.Color(pil).enhance(float(rng.uniform(0.5, 1.5)))
    return np.asarray(pil)
