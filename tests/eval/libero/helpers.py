"""Shared by the LIBERO harness tests: policies for the fake environment, and running an evaluation on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tests.eval.libero import fake_env
from torchtitan_vla.envs.libero.env import PROMPT_KEY, STATE_KEY
from torchtitan_vla.eval.libero.evaluate import Options, PolicySource, run

FAKE_ENV = "tests.eval.libero.fake_env"
HORIZON = 8


def seek_chunk(message: dict, horizon: int = HORIZON) -> np.ndarray:
    """The chunk that walks the hand to the instructed target (no instruction: stand still)."""
    chunk = np.zeros((horizon, 7), np.float32)
    found = re.fullmatch(r"move to target (\d+)", message[PROMPT_KEY])
    if not found:
        return chunk
    goal = fake_env.target(int(found.group(1)))
    hand = np.asarray(message[STATE_KEY][:3], np.float64)
    for row in chunk:
        row[:3] = np.clip((goal - hand) / fake_env.SPEED, -1, 1)
        hand = hand + fake_env.SPEED * row[:3]
    return chunk


class GoalSeeker:
    """A main-process policy (``BatchPolicy``) that reads the instruction; records its batch sizes."""

    def __init__(self):
        self.batch_sizes: list[int] = []

    def infer_batch(self, requests):
        self.batch_sizes.append(len(requests))
        return [seek_chunk(message) for message, _ in requests]


class LocalGoalSeeker:
    """The same policy run inside the workers (picklable)."""

    def __call__(self, spec, env):
        return lambda message, rtc: seek_chunk(message)


def fake_options(output: Path, **overrides) -> Options:
    defaults = dict(suite="fake_object", tasks="all", init_states="0-3", workers=1, env_module=FAKE_ENV,
                    output=str(output), progress=False)
    return Options(**{**defaults, **overrides})


def source(policy=None, local=None) -> PolicySource:
    return PolicySource({"policy": {"kind": "test"}, "checkpoint_hash": "sha256:test"}, batch_policy=policy,
                        local_policy=local)


def run_fake(output: Path, policy=None, local=None, **overrides) -> dict:
    """Evaluate on the fake environment; -> the results document."""
    return run(fake_options(output, **overrides), lambda: source(policy, local))
