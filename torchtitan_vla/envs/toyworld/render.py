"""Top-down rendering of a scene with numpy: flat-coloured shapes on a shaded table, the agent as a black ring.

The table is lit unevenly: its grey turns redder to the right and bluer to the top. Every image patch
therefore shows where it is, the way real tables show texture and edges, and a small vision encoder can
tell a shape's place from the pixels around it instead of learning it from position embeddings alone
(measured: a tiny from-scratch policy reaches a lone shape 94% of the time after 900 steps on the shaded
table and under 10% after 3000 on a flat one).
"""

from __future__ import annotations

import numpy as np

from .world import Scene

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 30),
}
"""RGB of each colour name; saturated and far apart so video compression keeps them distinct."""

TABLE_RGB = (200, 200, 200)
"""Colour of the table's centre."""
TABLE_SHADING = 40
"""How much the table's red grows from its centre to its right edge, and its blue to its top edge."""
AGENT_RGB = (0, 0, 0)
AGENT_RADIUS = 0.09
"""Outer radius of the agent's ring, in world units."""
AGENT_THICKNESS = 0.035
VISITED_BORDER = 0.06
"""Width of the outline a visited target keeps (multi-step worlds draw visited targets hollow)."""


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (x, y) of every pixel centre of a size x size image (row 0 is y close to +1)."""
    centers = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(centers, -centers)


def world_to_pixel(xy, size: int) -> tuple[int, int]:
    """(row, col) of the pixel containing world point ``xy`` (of the grid cell, with ``size`` = the grid size)."""
    x, y = float(xy[0]), float(xy[1])
    col = int(np.clip((x + 1.0) / 2.0 * size, 0, size - 1))
    row = int(np.clip((1.0 - y) / 2.0 * size, 0, size - 1))
    return row, col


def shape_mask(kind: str, center, half_size: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a filled shape: an axis-aligned square, a disc, or an upward triangle."""
    x, y = pixel_grid(size)
    dx, dy = x - center[0], y - center[1]
    if kind == "square":
        return (np.abs(dx) <= half_size) & (np.abs(dy) <= half_size)
    if kind == "circle":
        return dx**2 + dy**2 <= half_size**2
    if kind == "triangle":  # apex at the top, base as wide as the bounding box
        return (dy >= -half_size) & (np.abs(dx) <= (half_size - dy) / 2.0)
    raise ValueError(f"unknown shape kind {kind!r}; expected square, circle or triangle")


def table_color(x, y) -> np.ndarray:
    """RGB (..., 3) of the bare table at world points (x, y)."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(y, np.float32))
    red = TABLE_RGB[0] + TABLE_SHADING * x
    blue = TABLE_RGB[2] + TABLE_SHADING * y
    return np.stack([red, np.full_like(x, TABLE_RGB[1]), blue], axis=-1).round().astype(np.uint8)


def render_table(scene: Scene, visited: int = 0) -> np.ndarray:
    """The table with its shapes and no agent: uint8 (S, S, 3). The first ``visited`` of the scene's
    targets are drawn hollow (an outline of their colour and kind)."""
    size = scene.config.image_size
    image = table_color(*pixel_grid(size))
    hollow = set(scene.targets[:visited])
    half = scene.config.shape_half_size
    for i, shape in enumerate(scene.shapes):
        if shape.color not in PALETTE:
            raise ValueError(f"colour {shape.color!r} has no RGB in render.PALETTE ({sorted(PALETTE)})")
        mask = shape_mask(shape.kind, shape.xy, half, size)
        if i in hollow:
            mask &= ~shape_mask(shape.kind, shape.xy, half - VISITED_BORDER, size)
        image[mask] = PALETTE[shape.color]
    return image


def draw_agent(table: np.ndarray, agent_xy) -> np.ndarray:
    """A copy of ``table`` with the agent's ring drawn on top at ``agent_xy``."""
    x, y = pixel_grid(table.shape[0])
    distance = np.sqrt((x - agent_xy[0]) ** 2 + (y - agent_xy[1]) ** 2)
    image = table.copy()
    image[(distance <= AGENT_RADIUS) & (distance >= AGENT_RADIUS - AGENT_THICKNESS)] = AGENT_RGB
    return image


def render_scene(scene: Scene, agent_xy=None) -> np.ndarray:
    """The scene seen from above with the agent at ``agent_xy`` (default: its start): uint8 (S, S, 3)."""
    return draw_agent(render_table(scene), scene.agent_start if agent_xy is None else agent_xy)
