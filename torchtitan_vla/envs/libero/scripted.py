"""A privileged scripted controller for LIBERO pick-and-place goals (``(In obj region)`` / ``(On obj target)``):
above the object, descend, close, lift, over the target, lower, open. It solves most LIBERO-Object tasks.

It is a policy with a learned policy's call signature (``infer(obs) -> {"actions": (horizon, 7)}``) and keeps
no state between calls: the phase is read from the observation (where the object is relative to the gripper,
how far the fingers are open), so a harness may batch episodes, replan every few actions or restart it. The
observation must carry the simulator's privileged poses under ``PRIVILEGED_KEY`` (``LiberoEnv.privileged()``,
which holds the goal too); a learned policy never receives them.
"""

from __future__ import annotations

import numpy as np

from .env import LIBERO_ACTION_DIM, NOOP_ACTION, STATE_KEY

PRIVILEGED_KEY = "privileged"

# Metres per unit of action: a full-scale OSC_POSE delta moves the hand ~12 mm per 20 Hz step once it is moving,
# so a gain of 10/m saturates at 10 cm and leaves no overshoot when a chunk of 5 identical actions is executed.
POSITION_GAIN = 10.0
ROTATION_GAIN = 1.0
HOVER = 0.12  # above the object's origin while travelling to it (clears the other objects)
CARRY = 0.25  # height of the hand while carrying the object to its target
RELEASE = 0.10  # above the target's origin when the fingers open
GRASP_BELOW_TOP = 0.05  # the finger tips close this far below the object's top (the fingers are ~5 cm long)
NEAR = 0.012  # xy distance at which the hand counts as above a point
ALIGNED = 0.007  # xy distance within which the hand descends onto the object
# The arm sags a few millimetres short of small position targets; this much extra action closes the gap.
STICTION = 0.1
FINGER_OPEN = 0.037  # per-finger opening (max ~0.04) above which the gripper counts as open
FINGER_EMPTY = 0.004  # per-finger opening below which the fingers closed on nothing
FINGERS_SETTLED = 0.01  # finger speed (m/s) below which a closing grip has stopped: lift only then
HELD_XY = 0.02  # object within this xy distance of the finger tips (and below the top) counts as held
OPEN, CLOSE = -1.0, 1.0
# The hand points straight down (robosuite quaternion x, y, z, w): a rotation by pi about x.
DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def _rotation_error(quat: np.ndarray) -> np.ndarray:
    """World-frame axis-angle taking the hand's orientation to ``DOWN``."""
    from robosuite.utils.transform_utils import quat2axisangle, quat_inverse, quat_multiply

    return quat2axisangle(quat_multiply(DOWN, quat_inverse(quat)))


def _goal_parts(privileged: dict) -> tuple[str, str] | None:
    goal = [str(part) for part in np.asarray(privileged.get("goal", [])).reshape(-1)]
    if len(goal) != 3 or goal[0].lower() not in ("in", "on"):
        return None
    return goal[1], goal[2]


def scripted_action(privileged: dict, gripper_qpos: np.ndarray) -> np.ndarray:
    """One action toward the goal from the current poses; ``NOOP_ACTION`` for goals it cannot do."""
    parts = _goal_parts(privileged)
    if parts is None or f"{parts[0]}_pos" not in privileged or f"{parts[1]}_pos" not in privileged:
        return NOOP_ACTION.copy()
    obj, target = privileged[f"{parts[0]}_pos"], privileged[f"{parts[1]}_pos"]
    top = float(privileged[f"{parts[0]}_top"][0])
    grasp_z = max(obj[2], top - GRASP_BELOW_TOP)
    hand = privileged["eef_pos"]
    opening = float(gripper_qpos[0] - gripper_qpos[1]) / 2
    near_obj_xy = np.linalg.norm(hand[:2] - obj[:2]) < NEAR
    held = (FINGER_EMPTY < opening < FINGER_OPEN and np.linalg.norm(hand[:2] - obj[:2]) < HELD_XY
            and obj[2] - 0.03 < hand[2] < top + 0.01)
    settled = np.abs(privileged["gripper_qvel"]).max() < FINGERS_SETTLED
    above_target = np.linalg.norm(obj[:2] - target[:2]) < NEAR * 2

    if held and not settled and not above_target:
        goal, grip = hand, CLOSE  # the fingers are still closing on the object
    elif held and above_target and hand[2] < target[2] + RELEASE:
        goal, grip = hand, OPEN
    elif held and above_target:
        goal, grip = np.array([target[0], target[1], target[2] + RELEASE * 0.9]), CLOSE
    elif held and hand[2] < CARRY - 0.03 and not above_target:
        goal, grip = np.array([hand[0], hand[1], CARRY]), CLOSE
    elif held:
        goal, grip = np.array([target[0], target[1], CARRY]), CLOSE
    elif opening <= FINGER_EMPTY or (opening < FINGER_OPEN and not near_obj_xy):
        goal, grip = np.array([hand[0], hand[1], obj[2] + HOVER]), OPEN  # missed, or let go: open and back off
    elif not near_obj_xy and hand[2] < obj[2] + HOVER - 0.03:
        goal, grip = np.array([hand[0], hand[1], obj[2] + HOVER]), OPEN
    elif not near_obj_xy:
        goal, grip = np.array([obj[0], obj[1], obj[2] + HOVER]), OPEN
    elif hand[2] > grasp_z + 0.01:
        # Descend only while aligned (a finger landing on the object pushes it away); else re-centre.
        aligned = np.linalg.norm(hand[:2] - obj[:2]) < ALIGNED
        goal, grip = np.array([obj[0], obj[1], grasp_z if aligned else hand[2]]), OPEN
    else:
        goal, grip = hand, CLOSE
    action = np.zeros(LIBERO_ACTION_DIM, dtype=np.float32)
    error = goal - hand
    action[:3] = np.clip(error * POSITION_GAIN + STICTION * np.sign(error) * (np.abs(error) > 0.002), -1.0, 1.0)
    action[3:6] = np.clip(_rotation_error(privileged["eef_quat"]) * ROTATION_GAIN, -1.0, 1.0)
    action[6] = grip
    return action


class ScriptedPolicy:
    """``infer(obs) -> {"actions": (horizon, 7)}``: the scripted action repeated over the chunk.

    ``obs`` holds ``STATE_KEY`` (for the fingers) and ``PRIVILEGED_KEY`` (the env's privileged poses);
    images and prompt are ignored.
    """

    def __init__(self, horizon: int = 10):
        self.horizon = horizon

    def infer(self, obs: dict) -> dict:
        state = np.asarray(obs[STATE_KEY])
        action = scripted_action(obs[PRIVILEGED_KEY], state[6:8])
        return {"actions": np.repeat(action[None], self.horizon, axis=0)}
