"""The policies an evaluation can run, each checked against LIBERO's widths before any simulator starts.

* ``ExportPolicy``: an exported policy in the main process (``serve.Policy``), one batched model call for
  the observations of all workers;
* ``ServerPolicy``: a policy served over openpi's websocket protocol (``--server host:port``), with one
  connection per worker so the server's batcher sees concurrent requests;
* ``RandomActions``: the random-action baseline, uniform in LIBERO's [-1, 1] action box, run in the workers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from torchtitan_vla.envs.libero.env import LIBERO_ACTION_DIM, LIBERO_STATE_DIM

from .episode import EpisodeSpec, Rtc

MAX_CAMERAS = 2  # agent view and wrist


class PolicyMismatch(ValueError):
    """A policy whose widths do not fit LIBERO (bad input: named, before any simulator starts)."""


class ServerLost(RuntimeError):
    """The policy server went away mid-evaluation."""


def check_widths(source: str, action_dim: Any, state_dim: Any, horizon: Any, replan_steps: int,
                 cameras: int | None = None) -> None:
    """One line naming ``source`` and the width that does not fit LIBERO (widths the source does not
    state, None, are not checked)."""
    if action_dim is not None and int(action_dim) != LIBERO_ACTION_DIM:
        raise PolicyMismatch(f"{source} has action_dim {action_dim}; LIBERO's actions are {LIBERO_ACTION_DIM}-D "
                             "(delta end-effector 6 + gripper 1)")
    if state_dim is not None and int(state_dim) != LIBERO_STATE_DIM:
        raise PolicyMismatch(f"{source} has state_dim {state_dim}; LIBERO's state is {LIBERO_STATE_DIM}-D")
    if horizon is not None and int(horizon) < replan_steps:
        raise PolicyMismatch(f"{source} predicts {horizon} actions per chunk; --replan-steps {replan_steps} "
                             "needs at least that many")
    if cameras is not None and cameras > MAX_CAMERAS:
        raise PolicyMismatch(f"{source} has {cameras} cameras; LIBERO renders {MAX_CAMERAS} (agent view, wrist)")


def _with_rtc(message: dict, rtc: Rtc) -> dict:
    from torchtitan_vla.serve.rtc_keys import DELAY_KEY, PREV_ACTIONS_KEY

    if rtc is None:
        return message
    return {**message, PREV_ACTIONS_KEY: rtc[0], DELAY_KEY: rtc[1]}


class ExportPolicy:
    """An exported policy (``serve.Policy.from_export``) answering a batch of observations in one call."""

    def __init__(self, folder: str, replan_steps: int, device: str = "cpu"):
        from torchtitan_vla.serve.policy import Policy

        # The widths come from the loaded policy (its loader reads and checks the export's config); the
        # evaluation builds this before any simulator process starts.
        self.policy = Policy.from_export(folder, device=device)
        check_widths(f"checkpoint {folder}", self.policy.action_dim, self.policy.state_dim, self.policy.horizon,
                     replan_steps, len(self.policy.camera_keys))

    def infer_batch(self, requests: list[tuple[dict, Rtc]]) -> list[np.ndarray]:
        answers = self.policy.infer_batch([_with_rtc(message, rtc) for message, rtc in requests])
        return [answer["actions"] for answer in answers]


class ServerPolicy:
    """A policy server at ``address`` (``host:port`` or ``ws://host:port``), ``connections`` clients."""

    def __init__(self, address: str, connections: int, replan_steps: int, api_key: str | None = None):
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        self.address = address
        try:
            self.clients = [WebsocketClientPolicy(host=address, api_key=api_key) for _ in range(connections)]
        except OSError as err:
            raise ServerLost(f"no policy server at {address} ({err.strerror or err})") from None
        meta = self.clients[0].get_server_metadata()
        check_widths(f"the policy served at {address}", meta.get("action_dim"), meta.get("state_dim"),
                     meta.get("action_horizon"), replan_steps)
        self.metadata = meta
        self.pool = ThreadPoolExecutor(max_workers=connections)

    def _infer(self, client, message: dict) -> np.ndarray:
        from websockets.exceptions import ConnectionClosed

        try:
            return np.asarray(client.infer(message)["actions"])
        except (ConnectionClosed, OSError) as err:
            raise ServerLost(f"policy server {self.address} went away mid-episode ({type(err).__name__})") from None

    def infer_batch(self, requests: list[tuple[dict, Rtc]]) -> list[np.ndarray]:
        chunks = []
        for start in range(0, len(requests), len(self.clients)):  # one request per connection at a time
            part = requests[start: start + len(self.clients)]
            chunks += list(self.pool.map(self._infer, self.clients, [_with_rtc(m, rtc) for m, rtc in part]))
        return chunks

    def close(self) -> None:
        self.pool.shutdown()


class RandomActions:
    """``make(spec, env)`` -> a policy drawing chunks uniformly from [-1, 1]^7, seeded per episode."""

    def __init__(self, horizon: int):
        self.horizon = horizon

    def __call__(self, spec: EpisodeSpec, env):
        rng = np.random.default_rng(spec.seed)
        return lambda message, rtc: rng.uniform(-1.0, 1.0, (self.horizon, LIBERO_ACTION_DIM)).astype(np.float32)


class ScriptedController:
    """``make(spec, env)`` -> the privileged scripted controller (``envs.libero.scripted``), run in the workers
    on the observation plus the simulator's poses."""

    def __init__(self, horizon: int):
        self.horizon = horizon

    def __call__(self, spec: EpisodeSpec, env):
        from torchtitan_vla.envs.libero.scripted import ScriptedPolicy

        policy = ScriptedPolicy(self.horizon)
        return lambda message, rtc: policy.infer(message)["actions"]
