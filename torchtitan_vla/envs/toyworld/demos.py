"""The scripted expert: straight to the target at full speed, then stay.

Actions are position deltas (dx, dy) per step, at most ``max_speed`` long. A demonstration episode records
every step's image, state (agent xy) and action until the agent is at the target's centre, plus a few
still frames so that a policy also learns to stop there.
"""

from __future__ import annotations

import numpy as np

from .render import draw_agent, render_table
from .world import Scene, clip_speed, move


def expert_action(positions: np.ndarray, targets: np.ndarray, max_speed: float) -> np.ndarray:
    """The expert's next action (..., 2): the way to the target, scaled down to ``max_speed``."""
    return clip_speed(np.asarray(targets, np.float32) - np.asarray(positions, np.float32), max_speed)


def expert_chunk(positions: np.ndarray, targets: np.ndarray, horizon: int, max_speed: float) -> np.ndarray:
    """The expert's next ``horizon`` actions (N, horizon, 2), unrolled from positions (N, 2)."""
    positions = np.asarray(positions, np.float32).copy()
    chunk = np.zeros((positions.shape[0], horizon, 2), dtype=np.float32)
    for h in range(horizon):
        chunk[:, h] = expert_action(positions, targets, max_speed)
        positions = move(positions, chunk[:, h], max_speed)
    return chunk


def demo_episode(scene: Scene, hold_steps: int = 3, max_steps: int = 100) -> dict:
    """One demonstration in the writers' episode format.

    Returns ``{"frames": {"observation.images.top": uint8 (T, S, S, 3)}, "state": float32 (T, 2),
    "action": float32 (T, 2), "task": instruction}``; frame t shows the agent at state t, and action t
    moves it to state t + 1. Multi-step scenes add ``"subtask"``: the label of each frame's segment; the
    expert heads for the current target's centre and turns to the next one once it visits it (comes
    within ``success_radius``, as ``ToyWorld.step`` counts it).
    """
    config = scene.config
    position = np.asarray(scene.agent_start, dtype=np.float32)
    stage, last = 0, len(scene.targets) - 1
    states, actions, stages = [], [], []
    while len(states) < max_steps:
        target = np.asarray(scene.shapes[scene.targets[stage]].xy, dtype=np.float32)
        action = expert_action(position, target, config.max_speed)
        states.append(position)
        actions.append(action)
        stages.append(stage)
        position = move(position, action, config.max_speed)
        if stage < last and np.linalg.norm(target - position) <= config.success_radius:
            stage += 1
        elif np.linalg.norm(target - position) < 1e-4:
            break
    for _ in range(hold_steps):
        states.append(position)
        actions.append(np.zeros(2, dtype=np.float32))
        stages.append(stage)
    tables = [render_table(scene, visited) for visited in range(last + 1)]
    frames = np.stack([draw_agent(tables[k], s) for s, k in zip(states, stages)])
    episode = {
        "frames": {"observation.images.top": frames},
        "state": np.stack(states).astype(np.float32),
        "action": np.stack(actions).astype(np.float32),
        "task": scene.instruction,
    }
    if last:
        episode["subtask"] = [scene.subtask(k) for k in stages]
    return episode
