"""Words about the toy world: instructions for the robot, captions and documents for stage-1 web data.

All texts use one small vocabulary (colours, kinds, positions on a 3x3 grid, directions), so what the VLM
learns from captions in stage 1 ("a red square at the top left") is what the policy needs in stages 2-3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .world import Scene, Shape

INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    "move to the {name}",
    "go to the {name}",
    "reach the {name}",
    "touch the {name}",
)

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")


def instruction_for(shape: Shape, rng: np.random.Generator) -> str:
    """An instruction naming ``shape`` by colour and kind, with a random template."""
    template = INSTRUCTION_TEMPLATES[rng.integers(len(INSTRUCTION_TEMPLATES))]
    return template.format(name=shape.name)


def subtask_for(shape: Shape) -> str:
    """The subtask label of one segment of a multi-step task: ``go to the red square``."""
    return f"go to the {shape.name}"


def position_phrase(row: int, col: int, grid_size: int = 3) -> str:
    """Where a grid cell is, in words: ``the top left``, ``the top``, ``the center``, ``the right`` ..."""
    if grid_size != 3:
        return f"row {row + 1}, column {col + 1}"
    vertical, horizontal = _ROWS[row], _COLS[col]
    if vertical == "middle" and horizontal == "center":
        return "the center"
    if vertical == "middle":
        return f"the {horizontal}"
    if horizontal == "center":
        return f"the {vertical}"
    return f"the {vertical} {horizontal}"


def describe_shape(shape: Shape, grid_size: int = 3) -> str:
    return f"a {shape.name} at {position_phrase(shape.row, shape.col, grid_size)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene) -> str:
    """A cc12m-style caption listing every shape with its position, top row first."""
    grid = scene.config.grid_size
    shapes = sorted(scene.shapes, key=lambda s: (s.row, s.col))
    return _join([describe_shape(s, grid) for s in shapes]) + " on a table."


def direction_phrase(from_xy: np.ndarray, to_xy: np.ndarray) -> str:
    """Which way to go, e.g. ``up and to the left`` (a component under 0.15 counts as no motion)."""
    dx, dy = np.asarray(to_xy, dtype=np.float64) - np.asarray(from_xy, dtype=np.float64)
    vertical = "up" if dy > 0.15 else "down" if dy < -0.15 else ""
    horizontal = "to the right" if dx > 0.15 else "to the left" if dx < -0.15 else ""
    if vertical and horizontal:
        return f"{vertical} and {horizontal}"
    return vertical or horizontal or "nowhere, it is already there"


def document_texts(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
    """Texts of an interleaved document around two images of the scene (before, between, after them).

    The first image shows the table alone, the second with the agent; the texts ground colours, kinds,
    positions and the direction from the agent to the named shape.
    """
    grid = scene.config.grid_size
    counts = {1: "one shape", 2: "two shapes", 3: "three shapes", 4: "four shapes"}
    count = counts.get(len(scene.shapes), f"{len(scene.shapes)} shapes")
    intro = f"Here is a table with {count}."
    order = rng.permutation(len(scene.shapes))
    lines = [f"The {scene.shapes[i].name} is at {position_phrase(scene.shapes[i].row, scene.shapes[i].col, grid)}." for i in order]
    target = scene.shapes[scene.target]
    middle = " ".join(lines) + " Now the agent, a black ring, is placed on the table."
    direction = direction_phrase(np.asarray(scene.agent_start), np.asarray(target.xy))
    outro = f"To {scene.instruction}, the agent goes {direction}."
    return intro, middle, outro
