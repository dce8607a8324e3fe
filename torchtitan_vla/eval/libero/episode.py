"""One LIBERO episode under the protocol published LIBERO numbers use (openpi's ``examples/libero/main.py``).

* reset to one of the task's standard init states, then ``NUM_WAIT_STEPS`` (10) no-op steps with the
  gripper open while the simulator drops the objects; they count neither as policy steps nor for success;
* the policy sees the agent-view and wrist images as the datasets store them (rotated 180 degrees), the
  8-D state and the task's BDDL instruction, under openpi's LIBERO client keys;
* it returns a chunk of which the first ``replan_steps`` (5) actions run before it is asked again;
* the episode succeeds when the task's goal holds after a policy step, and ends after the suite's max steps.

The simulator renders only when an observation is sent to the policy (``env.render()`` at a request) or
when the episode is recorded as a video: a physics-only step is ~10x cheaper than one with two cameras.

A simulated inference delay (``eval.delay``, issue #18) is optional: the environment keeps stepping for d
control steps while the policy "thinks" (idle: no motion, gripper kept, in ``sync`` mode; the old chunk in
``naive``/``rtc`` mode). The idle steps count toward the max steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from torchtitan_vla.envs.libero.env import LIBERO_ACTION_DIM, NOOP_ACTION, policy_message
from torchtitan_vla.eval.delay import DelaySchedule, run_delayed

# An idle step under a simulated delay: no motion and gripper command 0, which robosuite's gripper reads by
# its sign as "keep the current opening" (an open command would drop a held object).
HOLD_ACTION = np.zeros(LIBERO_ACTION_DIM, np.float32)

KEY_FIELDS = ("suite", "task_id", "init_state", "variant")
"""What identifies an episode, in an ``EpisodeSpec`` and in its results-file record alike."""

Rtc = tuple[np.ndarray, int] | None
"""Real-time chunking's extra inputs of a request (``serve/rtc_keys.py``): the rest of the running chunk
(L, 7) and the delay d; None for a plain request."""
ChunkFn = Callable[[dict, Rtc], np.ndarray]
"""``policy(message, rtc) -> (H, >= 7) actions``: one observation message (openpi keys) in, one chunk out."""


@dataclass(frozen=True)
class EpisodeSpec:
    suite: str
    """The suite whose environment runs (a perturbed LIBERO-PRO suite for that diagnostic)."""
    task_id: int
    init_state: int
    """Index into the task's standard init states."""
    variant: str
    """``standard``, ``blank_instruction``, ``other_instruction`` or the perturbed suite's name."""
    base_suite: str
    """The standard suite whose table row the episode counts in."""
    prompt: str
    """What the policy is told."""
    seed: int
    """The episode's own seed (random delays, random-action policy)."""
    max_steps: int
    """Policy steps (including idle steps under a delay) before the episode counts as failed."""
    video: bool = False
    """Render every step and keep the frames for an mp4."""

    @property
    def key(self) -> tuple:
        """Identifies the episode in a results file (resume skips the keys it finds: ``results.record_key``)."""
        return tuple(getattr(self, name) for name in KEY_FIELDS)


@dataclass(frozen=True)
class EpisodeSettings:
    num_wait_steps: int
    replan_steps: int
    execution: str = "sync"
    delay: int = 0
    max_delay: int | None = None
    render_every_step: bool = False
    """Render both cameras at every step (the cost the replan-only rendering avoids; for benchmarks)."""
    privileged_key: str | None = None
    """Send the simulator's privileged poses under this key (the scripted controller); None: never."""
    images: bool = True
    """Render for the policy; False for a policy that reads no images (scripted, random: no render cost)."""

    def schedule(self, seed: int) -> DelaySchedule:
        return DelaySchedule(self.execution, self.delay, self.max_delay, seed)


@dataclass
class EpisodeResult:
    success: bool
    steps: int
    """Policy steps run (success ends the episode early)."""
    policy_calls: int
    seconds: float
    frames: list[np.ndarray] = field(default_factory=list)
    """Agent-view frames of every step (video episodes only)."""


def run_episode(env, spec: EpisodeSpec, settings: EpisodeSettings, policy: ChunkFn) -> EpisodeResult:
    """Run one episode of ``env`` (a ``LiberoEnv`` of ``spec``'s suite and task) with ``policy``."""
    start = time.perf_counter()
    render = spec.video or settings.render_every_step
    frames: list[np.ndarray] = []
    obs = env.reset(spec.init_state, render=render)
    for _ in range(settings.num_wait_steps):
        obs, _ = env.step(NOOP_ACTION, render=render)
        if spec.video:
            frames.append(obs.image)
    steps = calls = 0
    success = False

    def request(prev: np.ndarray | None, delay: int) -> np.ndarray:
        nonlocal calls
        if obs.image is None and settings.images:  # the steps since the last request ran physics only
            obs.image, obs.wrist_image = env.render()
        message = policy_message(obs, spec.prompt)
        if settings.privileged_key:
            message[settings.privileged_key] = env.privileged()
        chunk = np.asarray(policy(message, None if prev is None else (prev[0], delay)), np.float32)
        calls += 1
        if chunk.ndim != 2 or chunk.shape[1] < LIBERO_ACTION_DIM or len(chunk) < settings.replan_steps:
            raise ValueError(f"the policy returned actions of shape {chunk.shape}; replanning every "
                             f"{settings.replan_steps} steps needs (>= {settings.replan_steps}, >= {LIBERO_ACTION_DIM})")
        return chunk[None, :, :LIBERO_ACTION_DIM]

    def step(action: np.ndarray) -> bool:
        nonlocal obs, steps, success
        steps += 1
        obs, success = env.step(action[0], render=render)
        if spec.video:
            frames.append(obs.image)
        return success or steps >= spec.max_steps

    run_delayed(request, step, settings.replan_steps, settings.schedule(spec.seed), HOLD_ACTION[None])
    return EpisodeResult(bool(success), steps, calls, time.perf_counter() - start, frames)
