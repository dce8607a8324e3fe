"""Meta-World v3 as an environment: its tasks and their instructions, one task with offscreen rendering
(``TaskEnv``), the policy's view of an observation (``state_of``), and scripted-expert episodes written as a
LeRobot demonstration dataset. Closed-loop evaluation of a policy is ``torchtitan_vla.eval.metaworld``.

Rendering is offscreen through MuJoCo: set ``MUJOCO_GL=osmesa`` on a CPU machine (``apt-get install -y
libosmesa6``) or ``MUJOCO_GL=egl`` on a GPU one, before anything imports ``mujoco``. Recipes:
``datasets/metaworld/README.md``.

The observation a policy gets is the one openpi's LIBERO client sends: ``observation/image`` (uint8
H x W x 3, the ``corner2`` camera), ``observation/state`` (float32: the current-frame part of Meta-World's
39-d observation, i.e. hand position, gripper opening and object poses, plus the goal position) and
``prompt`` (the task's instruction). The action is Meta-World's 4-d (dx, dy, dz, gripper effort) in [-1, 1].
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MT10_TASKS = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# Meta-World ships no language; these instructions are the dataset's task texts and the eval prompts.
TASK_INSTRUCTIONS = {
    "reach-v3": "reach the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door",
    "drawer-open-v3": "open the drawer",
    "drawer-close-v3": "close the drawer",
    "button-press-topdown-v3": "press the button from the top",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}

CAMERA_NAME = "corner2"
CAMERA_KEY = "observation.images.corner2"
IMAGE_KEY = "observation/image"
STATE_KEY = "observation/state"
PROMPT_KEY = "prompt"
FPS = 80  # Meta-World's control rate: frame_skip 5 x MuJoCo timestep 2.5 ms.
STATE_DIM = 21
ACTION_DIM = 4
# Seeds of the goal/object layouts: demonstrations and evaluation never share one.
DEMO_SEED = 0
EVAL_SEED = 10_000
_TASKS_PER_SEED = 50  # MT1 draws 50 layouts per seed.
DEBUG_TOKENIZER = "tokenizer.json"
MAX_PATH_LENGTH = 500  # Meta-World refuses to step an episode further.


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """``"mt10"``, a comma-separated string, or a list of Meta-World v3 environment names."""
    import metaworld

    names = list(MT10_TASKS) if spec == "mt10" else (spec.split(",") if isinstance(spec, str) else list(spec))
    names = [n.strip() for n in names if n.strip()]
    known = metaworld.ALL_V3_ENVIRONMENTS
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown Meta-World v3 task(s) {unknown or spec!r}; e.g. {', '.join(MT10_TASKS[:3])}")
    return names


def check_episode_length(max_steps: int) -> None:
    if max_steps > MAX_PATH_LENGTH:
        raise ValueError(f"max_steps={max_steps} exceeds Meta-World's episode limit of {MAX_PATH_LENGTH} steps")


def instruction(task: str) -> str:
    """The instruction of ``task``: a written one for MT10, else derived from the environment name."""
    return TASK_INSTRUCTIONS.get(task, task.removesuffix("-v3").replace("-", " "))


def state_of(obs: np.ndarray) -> np.ndarray:
    """The policy's state from Meta-World's 39-d observation: the current frame (18) and the goal (3);
    the previous frame (the middle 18) is left out."""
    obs = np.asarray(obs, dtype=np.float32)
    return np.concatenate([obs[:18], obs[-3:]])


class TaskEnv:
    """One Meta-World task with offscreen rendering; ``reset(layout)`` starts episode ``layout`` of a seed."""

    def __init__(self, task: str, seed: int, image_size: int = 128, render: bool = True):
        import metaworld

        self.task = task
        self.seed = seed
        self._benchmarks: dict[int, Any] = {}
        view = {"render_mode": "rgb_array", "camera_name": CAMERA_NAME, "width": image_size, "height": image_size}
        self.env = metaworld.ALL_V3_ENVIRONMENTS[task](**(view if render else {}))

    def _layouts(self, block: int):
        import metaworld

        if block not in self._benchmarks:
            self._benchmarks[block] = metaworld.MT1(self.task, seed=self.seed + block).train_tasks
        return self._benchmarks[block]

    def reset(self, layout: int) -> np.ndarray:
        block, index = divmod(layout, _TASKS_PER_SEED)
        self.env.set_task(self._layouts(block)[index])
        obs, _ = self.env.reset()
        return obs

    def render(self) -> np.ndarray:
        # MuJoCo's offscreen buffer is bottom-up; flip it so the image is upright.
        return np.ascontiguousarray(self.env.render()[::-1])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        obs, _, _, _, info = self.env.step(np.clip(np.asarray(action, np.float32), -1.0, 1.0))
        return obs, bool(info["success"])

    def close(self) -> None:
        self.env.close()


def scripted_episode(env: TaskEnv, layout: int, max_steps: int = 300, record: bool = True) -> tuple[dict | None, bool]:
    """Run Meta-World's scripted policy for ``task`` on one layout until its first success (at most
    ``max_steps`` steps). With ``record``, also return the writers' episode dict (frame t and state t are
    seen before action t); without, nothing is rendered, which is ~100x faster with osmesa."""
    from metaworld.policies import ENV_POLICY_MAP

    expert = ENV_POLICY_MAP[env.task]()
    obs = env.reset(layout)
    frames, states, actions = [], [], []
    success = False
    for _ in range(max_steps):
        action = np.clip(expert.get_action(obs), -1.0, 1.0).astype(np.float32)
        if record:
            frames.append(env.render())
            states.append(state_of(obs))
            actions.append(action)
        obs, success = env.step(action)
        if success:
            break
    if not record:
        return None, success
    episode = {
        "frames": {CAMERA_KEY: np.stack(frames)},
        "state": np.stack(states),
        "action": np.stack(actions),
        "task": instruction(env.task),
    }
    return episode, success


def scripted_success(tasks: str | list[str] = "mt10", episodes_per_task: int = 50, max_steps: int = 300,
                     seed: int = DEMO_SEED) -> dict[str, float]:
    """Per task: the fraction of layouts on which the scripted policy succeeds (no rendering)."""
    rates = {}
    for task in resolve_tasks(tasks):
        env = TaskEnv(task, seed, render=False)
        wins = sum(scripted_episode(env, layout, max_steps, record=False)[1] for layout in range(episodes_per_task))
        env.close()
        rates[task] = wins / episodes_per_task
    return rates


@dataclass
class DemoReport:
    root: str
    """The LeRobot dataset written."""

    episodes_written: int
    """Successful demonstrations kept in the dataset."""

    scripted_success: dict[str, float] = field(default_factory=dict)
    """Per task: the fraction of scripted episodes that succeeded within ``max_steps``."""


def generate_demonstrations(
    root: str,
    tasks: str | list[str] = "mt10",
    episodes_per_task: int = 10,
    image_size: int = 128,
    max_steps: int = 300,
    seed: int = DEMO_SEED,
    keep_failures: bool = False,
) -> DemoReport:
    """Write scripted demonstrations of ``tasks`` as a LeRobot v3.0 dataset at ``root``, plus
    ``root/tokenizer.json``, a debug-flavor tokenizer that covers the instructions (for CPU runs)."""
    from torchtitan_vla.data.write_lerobot import write_lerobot_dataset
    from torchtitan_vla.processing.tokenizer import build_debug_tokenizer

    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    check_episode_length(max_steps)
    episodes, rates = [], {}
    for task in resolve_tasks(tasks):
        env = TaskEnv(task, seed, image_size)
        successes = 0
        for layout in range(episodes_per_task):
            episode, success = scripted_episode(env, layout, max_steps)
            successes += success
            if success or keep_failures:
                episodes.append(episode)
        env.close()
        rates[task] = successes / episodes_per_task
        logger.info("%s: scripted success %d/%d", task, successes, episodes_per_task)
    if not episodes:
        raise RuntimeError(f"no successful scripted episode for {tasks}; nothing to write (try a larger max_steps)")
    write_lerobot_dataset(root, episodes, fps=FPS, version="v3.0", robot_type="sawyer")
    # The tiny debug flavor has no pretrained tokenizer: give it one that knows the instructions' words.
    words = sorted({w for ep in episodes for w in ep["task"].split()})
    build_debug_tokenizer(os.path.join(root, DEBUG_TOKENIZER), extra_words=words)
    return DemoReport(root=root, episodes_written=len(episodes), scripted_success=rates)
