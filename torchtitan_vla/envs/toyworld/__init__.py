"""A generated toy world: coloured shapes on a table, an instruction naming one, an agent that must reach it."""

from .demos import demo_episode, expert_action, expert_chunk
from .render import render_scene, render_table
from .world import Scene, Shape, ToyWorld, WorldConfig, sample_scene

__all__ = [
    "Scene",
    "Shape",
    "ToyWorld",
    "WorldConfig",
    "demo_episode",
    "expert_action",
    "expert_chunk",
    "render_scene",
    "render_table",
    "sample_scene",
]
