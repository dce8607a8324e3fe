"""The episode loop follows openpi's LIBERO protocol: wait steps, replan interval, max steps, rendering."""

import numpy as np
import pytest

from tests.eval.libero import fake_env
from tests.eval.libero.helpers import seek_chunk
from torchtitan_vla.envs.libero.env import IMAGE_KEY, NOOP_ACTION, PROMPT_KEY, WRIST_IMAGE_KEY
from torchtitan_vla.eval.libero.episode import HOLD_ACTION, EpisodeSettings, EpisodeSpec, run_episode


def spec(prompt="move to target 0", max_steps=30, video=False, init_state=0) -> EpisodeSpec:
    return EpisodeSpec("fake_object", 0, init_state, "standard", "fake_object", prompt, seed=0, max_steps=max_steps,
                       video=video)


class Recorder:
    """A policy that remembers what it was sent."""

    def __init__(self, chunk_fn=seek_chunk):
        self.messages, self.rtc, self.chunk_fn = [], [], chunk_fn

    def __call__(self, message, rtc):
        self.messages.append(message)
        self.rtc.append(rtc)
        return self.chunk_fn(message)


def test_wait_steps_replanning_and_success():
    env, policy = fake_env.LiberoEnv("fake_object", 0), Recorder()
    result = run_episode(env, spec(), EpisodeSettings(num_wait_steps=10, replan_steps=5), policy)
    # The first 10 steps are openpi's no-op (gripper open); the hand starts 0.4 m from target 0 and the
    # policy moves 0.05 m per step: 8 policy steps, asked at steps 0 and 5.
    assert all(np.array_equal(a, NOOP_ACTION) for a in env.actions[:10])
    assert result.success and result.steps == 8 and len(env.actions) == 18
    assert result.policy_calls == 2 and policy.rtc == [None, None]
    # The second request sees the state after exactly 5 executed actions (replanning every 5).
    assert policy.messages[1]["observation/state"][0] == pytest.approx(5 * fake_env.SPEED)
    assert policy.messages[0][PROMPT_KEY] == "move to target 0"


def test_renders_only_when_the_policy_is_asked():
    env = fake_env.LiberoEnv("fake_object", 0)
    fake_env.LiberoEnv.renders = 0
    result = run_episode(env, spec(prompt="", max_steps=23), EpisodeSettings(10, 5), Recorder())
    assert not result.success and result.steps == 23
    assert result.policy_calls == 5 and fake_env.LiberoEnv.renders == 5  # steps 0, 5, 10, 15, 20
    fake_env.LiberoEnv.renders = 0
    run_episode(env, spec(prompt="", max_steps=23), EpisodeSettings(10, 5, render_every_step=True), Recorder())
    assert fake_env.LiberoEnv.renders == 1 + 10 + 23  # reset, wait steps, policy steps


def test_sent_images_are_fresh():
    # The image sent at a request shows the hand where it is then, not where it was last rendered.
    policy = Recorder()
    run_episode(fake_env.LiberoEnv("fake_object", 0), spec(), EpisodeSettings(10, 5), policy)
    first, second = (m[IMAGE_KEY][0, 0, 0] for m in policy.messages)
    assert second > first and policy.messages[0][WRIST_IMAGE_KEY].shape == (256, 256, 3)


def test_video_episode_keeps_every_frame():
    result = run_episode(fake_env.LiberoEnv("fake_object", 0), spec(video=True), EpisodeSettings(10, 5), Recorder())
    assert len(result.frames) == 10 + result.steps and result.frames[0].dtype == np.uint8


def test_short_chunk_is_named():
    policy = Recorder(lambda message: np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 7\); replanning every 5 steps"):
        run_episode(fake_env.LiberoEnv("fake_object", 0), spec(), EpisodeSettings(10, 5), policy)


def test_simulated_delay_holds_still_then_runs_the_chunk():
    # sync execution with d=2: after each request the arm holds (no motion, gripper kept) for 2 steps.
    env = fake_env.LiberoEnv("fake_object", 0)
    result = run_episode(env, spec(), EpisodeSettings(10, 5, delay=2), Recorder())
    policy_actions = env.actions[10:]
    assert all(np.array_equal(a, HOLD_ACTION) for a in policy_actions[:2])
    assert not np.array_equal(policy_actions[2], HOLD_ACTION)
    assert result.success and result.steps == 8 + 2 * 2  # two requests, each followed by 2 idle steps


def test_rtc_execution_sends_the_running_chunk():
    policy = Recorder()
    run_episode(fake_env.LiberoEnv("fake_object", 0), spec(), EpisodeSettings(10, 5, execution="rtc", delay=2), policy)
    assert policy.rtc[0] is None
    prev, delay = policy.rtc[1]
    assert delay == 2 and prev.shape[1] == 7


def test_policy_that_reads_no_images_costs_no_render():
    env = fake_env.LiberoEnv("fake_object", 0)
    fake_env.LiberoEnv.renders = 0
    policy = Recorder()
    result = run_episode(env, spec(), EpisodeSettings(10, 5, images=False), policy)
    assert result.success and fake_env.LiberoEnv.renders == 0 and policy.messages[0][IMAGE_KEY] is None
