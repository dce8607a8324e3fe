"""Pictures and HTML pieces of the batch inspector (data/inspect.py), drawn with PIL only.

Everything becomes an inline ``<img src="data:image/png;base64,...">`` so the page is one self-contained
file that can be mailed or attached to an issue.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw

from ..processing.processor import MERGE_SIZE, PATCH_SIZE, TEMPORAL_PATCH_SIZE

GREY = (225, 225, 225)
PANEL = (150, 64)
"""Size (width, height) in pixels of one dimension's plot."""


def png_tag(image: Image.Image | np.ndarray, css_class: str, title: str = "", scale: int = 1) -> str:
    """``<img>`` of ``image`` as an inline PNG (nearest-neighbour ``scale``-fold, for small pictures)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img class="{css_class}" title="{html.escape(title)}" src="data:image/png;base64,{data}">'


def unpatchify(pixel_values: torch.Tensor, grid: torch.Tensor) -> np.ndarray:
    """One image's (N, 1536) patch rows (processor ``_patchify`` order, normalised to [-1, 1]) back to the
    uint8 (H, W, 3) picture the vision tower receives (first temporal copy)."""
    t, gh, gw = (int(v) for v in grid)
    pixels = rearrange(
        pixel_values.float().numpy(), "(t bh bw m1 m2) (c tp py px) -> t tp (bh m1 py) (bw m2 px) c",
        t=t, bh=gh // MERGE_SIZE, bw=gw // MERGE_SIZE, m1=MERGE_SIZE, m2=MERGE_SIZE, tp=TEMPORAL_PATCH_SIZE,
        py=PATCH_SIZE, px=PATCH_SIZE,
    )[0, 0]
    return np.clip(np.rint((pixels * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)


def _scale(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low - 1, high + 1) if high - low < 1e-9 else (low, high)


def chunk_plot(values: np.ndarray, real_dims: np.ndarray, is_pad: np.ndarray, title: str) -> Image.Image:
    """One small panel per dimension of an (H, D) chunk: the value over the H steps. Padded dimensions
    have a grey panel, ``is_pad`` steps a grey band; the panel's y range is printed in its corner."""
    horizon, dims = values.shape
    cols = min(dims, 8)
    rows = -(-dims // cols)
    width, height = PANEL
    image = Image.new("RGB", (cols * width, rows * height + 14), "white")
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), title, fill="black")
    for d in range(dims):
        x0, y0 = (d % cols) * width, 14 + (d // cols) * height
        draw.rectangle([x0, y0, x0 + width - 1, y0 + height - 1], fill="white" if real_dims[d] else GREY,
                       outline=(180, 180, 180))
        step = (width - 8) / max(1, horizon - 1)
        for h in np.flatnonzero(is_pad):
            draw.rectangle([x0 + 4 + (h - 0.5) * step, y0 + 1, x0 + 4 + (h + 0.5) * step, y0 + height - 2], fill=GREY)
        low, high = _scale(values[:, d])
        ys = y0 + height - 12 - (values[:, d] - low) / (high - low) * (height - 24)
        points = [(x0 + 4 + h * step, float(y)) for h, y in enumerate(ys)]
        colour = (30, 90, 200) if real_dims[d] else (150, 150, 150)
        if len(points) > 1:
            draw.line(points, fill=colour, width=1)
        for x, y in points:
            draw.point((x, y), fill=colour)
        draw.text((x0 + 3, y0 + 1), f"{d}: {low:.2g}..{high:.2g}", fill=(90, 90, 90))
    return image


def state_plot(values: np.ndarray, real_dims: np.ndarray, title: str) -> Image.Image:
    """Bars of a (D,) state around zero; padded dimensions grey."""
    dims = len(values)
    bar, height = 18, 80
    image = Image.new("RGB", (max(160, dims * bar + 4), height + 28), "white")
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), title, fill="black")
    limit = max(1e-6, float(np.abs(values).max()))
    mid = 14 + height // 2
    draw.line([(0, mid), (image.width, mid)], fill=(180, 180, 180))
    for d, v in enumerate(values):
        x = 2 + d * bar
        if not real_dims[d]:
            draw.rectangle([x, 14, x + bar - 3, 14 + height], fill=GREY)
        top = mid - float(v) / limit * (height // 2 - 2)
        draw.rectangle([x, min(mid, top), x + bar - 3, max(mid, top)], fill=(30, 90, 200) if real_dims[d] else (150, 150, 150))
        draw.text((x, 16 + height), str(d), fill=(90, 90, 90))
    draw.text((image.width - 60, 1), f"|max| {limit:.2g}", fill=(90, 90, 90))
    return image


def mask_picture(mask: torch.Tensor, kinds: list[str], side: int = 600) -> Image.Image:
    """(L, L) bool attention mask (row = query, column = key; white = may attend) with a strip on the top
    and left coloured by token kind: image (orange), text (blue), padding (grey), expert (green)."""
    colours = {"image": (240, 150, 40), "text": (60, 110, 220), "pad": (170, 170, 170), "expert": (40, 170, 80)}
    m = mask.bool().numpy()
    length = m.shape[0]
    strip = 6
    canvas = np.full((length + strip, length + strip, 3), 255, np.uint8)
    canvas[strip:, strip:] = np.where(m[..., None], 255, 20)
    kind_rgb = np.array([colours[k] for k in kinds], np.uint8)
    canvas[:strip, strip:] = kind_rgb[None]
    canvas[strip:, :strip] = kind_rgb[:, None]
    return Image.fromarray(canvas).resize((side, side), Image.NEAREST)  # short prompts stay readable


def token_html(tokens: list[str], in_loss: list[bool]) -> str:
    """The prompt token by token; tokens with a text loss target are green, the rest plain."""
    spans = []
    for text, loss in zip(tokens, in_loss):
        css = "tok loss" if loss else "tok"
        spans.append(f'<span class="{css}">{html.escape(text)}</span>')
    return "".join(spans)


PAGE_STYLE = """
body { font-family: sans-serif; margin: 16px; }
.sample { border: 1px solid #ccc; margin: 10px 0; padding: 8px; }
.cam { border: 1px solid #888; margin-right: 6px; }
.tok { border: 1px solid #ddd; padding: 0 2px; margin: 1px; display: inline-block; font-family: monospace;
       font-size: 11px; white-space: pre; }
.tok.loss { background: #b6f0b6; border-color: #4a4; }
.instruction { font-weight: bold; }
pre { white-space: pre-wrap; }
"""
