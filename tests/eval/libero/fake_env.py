"""A stand-in for ``torchtitan_vla.envs.libero.env`` with the same module API, for the harness's logic tests.

Each task asks the hand to reach a target point; the instruction names the target ("move to target 2"),
so a policy that reads it succeeds and one that does not, fails. Init state i starts the hand at a point
of its own. Images encode the hand position (so a test can tell a fresh render from a stale one) and
every render is counted. Environment variables make a step slow (``FAKE_ENV_STEP_SECONDS``) or make one
init state crash the simulator (``FAKE_ENV_CRASH_INIT_STATE``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from torchtitan_vla.envs.libero.env import LiberoObservation

SUITE_MAX_STEPS = {"fake_object": 30, "fake_goal": 40}
NUM_WAIT_STEPS = 3
TASKS_PER_SUITE = 3
INIT_STATES = 50
SPEED = 0.05  # metres per step at a full-scale action
TOLERANCE = 0.03


def suite_names(include_perturbed: bool = False) -> list[str]:
    return list(SUITE_MAX_STEPS) + (["fake_object_swap"] if include_perturbed else [])


def task_count(suite: str) -> int:
    if suite not in suite_names(include_perturbed=True):
        raise ValueError(f"unknown LIBERO suite {suite!r}")
    return TASKS_PER_SUITE


def target(task_id: int) -> np.ndarray:
    """Each task's target in its own direction from the start: the path to one passes no other."""
    angle = 2 * np.pi * task_id / TASKS_PER_SUITE
    return np.array([0.4 * np.cos(angle), 0.4 * np.sin(angle), 0.0])


def task_language(suite: str, task_id: int) -> str:
    return f"move to target {task_id}"


def libero_versions() -> dict[str, str]:
    return {"fake-libero": "0.0"}


class LiberoEnv:
    renders = 0  # per process; in-process tests read it

    def __init__(self, suite: str, task_id: int, image_size: int = 256, seed: int = 0):
        self.suite, self.task_id, self.image_size, self.seed = suite, task_id, image_size, seed
        self.language = task_language(suite, task_id)
        self.max_steps = SUITE_MAX_STEPS.get(suite, 30)
        self.actions: list[np.ndarray] = []
        self.step_seconds = float(os.environ.get("FAKE_ENV_STEP_SECONDS", "0"))
        self.crash_at = int(os.environ.get("FAKE_ENV_CRASH_INIT_STATE", "-1"))

    def num_init_states(self) -> int:
        return INIT_STATES

    def reset(self, init_state_index: int, render: bool = True) -> LiberoObservation:
        if init_state_index == self.crash_at:
            raise RuntimeError("simulator exploded")
        # "swap" moves the start; the goal stays (as LIBERO-PRO swaps object positions).
        offset = 0.1 if self.suite.endswith("_swap") else 0.0
        self.hand = np.array([-offset, 0.01 * (init_state_index % 5), 0.0])
        self.actions = []
        return self._observation(render)

    def step(self, action: np.ndarray, render: bool) -> tuple[LiberoObservation, bool]:
        if self.step_seconds:
            time.sleep(self.step_seconds)
        action = np.asarray(action, np.float64)
        assert action.shape == (7,), action.shape
        self.actions.append(action)
        self.hand = self.hand + SPEED * np.clip(action[:3], -1, 1)
        return self._observation(render), bool(np.linalg.norm(self.hand - target(self.task_id)) < TOLERANCE)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        LiberoEnv.renders += 1
        level = np.uint8(np.clip(128 + 200 * self.hand[0], 0, 255))
        image = np.full((self.image_size, self.image_size, 3), level, np.uint8)
        return image, image[::-1].copy()

    def _observation(self, render: bool) -> LiberoObservation:
        image, wrist = self.render() if render else (None, None)
        state = np.concatenate([self.hand, np.zeros(3), [0.04, -0.04]]).astype(np.float32)
        return LiberoObservation(image, wrist, state)

    def privileged(self) -> dict:
        return {"hand": self.hand.copy(), "goal": target(self.task_id)}

    def close(self) -> None:
        pass
