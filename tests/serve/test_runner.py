"""Asynchronous chunk execution (serve.runner) and the optional real-time chunking keys, in-process and
through the server with openpi's own client."""

import threading
import time

import numpy as np
import pytest
import torch

from tests.serve.test_server import ACTION_DIM, CAMERAS, STATE_DIM, _observation
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.runner import ChunkRunner
from torchtitan_vla.serve.server import PolicyServer
from torchtitan_vla.tools.debug_policy import export_debug_policy

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

HORIZON = 8


class GatedPolicy:
    """Answers chunk n (every row = n, first column counting rows) once the test opens the gate."""

    def __init__(self):
        self.requests: list[dict] = []
        self.gate = threading.Event()

    def infer(self, obs):
        self.requests.append(obs)
        if len(self.requests) > 1:
            self.gate.wait(10)
            self.gate.clear()
        n = len(self.requests)
        chunk = np.full((HORIZON, 2), float(n), np.float32)
        chunk[:, 1] = np.arange(HORIZON)
        return {"actions": chunk}


def _wait_done(runner):
    for _ in range(1000):
        if runner._pending is not None and runner._pending.done():
            return
        time.sleep(0.001)
    raise AssertionError("request did not finish")


@pytest.mark.parametrize("rtc", [True, False], ids=["rtc", "naive"])
def test_runner_executes_the_old_chunk_while_the_next_is_computed(rtc):
    policy = GatedPolicy()
    # A long control period: every measured latency is 1 tick, so d = 1 and the next request goes out
    # after execute_steps - 1 = 3 actions.
    runner = ChunkRunner(policy, execute_steps=4, control_period_s=10.0, rtc=rtc)
    actions = [runner.act({"t": i}) for i in range(4)]
    assert [a[0] for a in actions] == [1, 1, 1, 1] and [a[1] for a in actions] == [0, 1, 2, 3]
    # The request left at tick 3 with the observation of that tick; 2 more ticks pass before its answer.
    assert policy.requests[1]["t"] == 3
    if rtc:
        np.testing.assert_array_equal(policy.requests[1]["prev_actions"][:, 1], np.arange(3, HORIZON))
        assert policy.requests[1]["inference_delay"] == 1
    else:
        assert "prev_actions" not in policy.requests[1]
    actions.append(runner.act({"t": 4}))  # still the old chunk, row 4
    assert tuple(actions[-1]) == (1, 4)
    policy.gate.set()
    _wait_done(runner)
    switched = runner.act({"t": 5})
    # Switched after 2 ticks (d' = 2): the new chunk continues at its row 2.
    assert tuple(switched) == (2, 2) and runner.stats.delays == [2] and runner.stats.requested_delays == [1]
    assert runner.stats.jumps == [pytest.approx(np.hypot(1, 2))]
    runner.close()


def test_runner_holds_the_last_action_when_the_chunk_runs_out():
    policy = GatedPolicy()
    runner = ChunkRunner(policy, execute_steps=HORIZON, control_period_s=10.0, rtc=True)
    actions = [runner.act({"t": i}) for i in range(HORIZON + 3)]
    assert [tuple(a) for a in actions[HORIZON - 1:]] == [(1, HORIZON - 1)] * 4
    policy.gate.set()
    runner.close()


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """test_server's tiny policy with a horizon of 8, long enough for a frozen prefix and an overlap."""
    return Policy.from_export(export_debug_policy(tmp_path_factory.mktemp("export"), CAMERAS, STATE_DIM, ACTION_DIM,
                                                  horizon=HORIZON))


def test_policy_freezes_the_delay_rows_to_the_previous_chunk(policy):
    prev = np.random.default_rng(1).normal(size=(6, ACTION_DIM)).astype(np.float32)
    actions = policy.infer({**_observation(), "prev_actions": prev, "inference_delay": 3})["actions"]
    assert actions.shape == (HORIZON, ACTION_DIM)
    np.testing.assert_allclose(actions[:3], prev[:3], rtol=0, atol=1e-5)  # up to (un)normalisation rounding
    assert not np.allclose(actions[3:6], prev[3:6], atol=1e-3)
    with pytest.raises(ValueError, match="'inference_delay' must be an int in \\[0, 6\\]"):
        policy.infer({**_observation(), "prev_actions": prev, "inference_delay": 7})
    with pytest.raises(ValueError, match="'prev_actions' must have shape"):
        policy.infer({**_observation(), "prev_actions": prev[:, :2]})


def test_rtc_settings_are_advertised_and_can_be_overridden(policy):
    assert policy.metadata["real_time_chunking"] == {"request_keys": ["prev_actions", "inference_delay"],
                                                     "mode": "guided", "max_guidance_weight": 5.0, "schedule": "exp"}
    prev = np.random.default_rng(1).normal(size=(6, ACTION_DIM)).astype(np.float32)

    def answers() -> tuple[np.ndarray, np.ndarray]:
        torch.manual_seed(0)
        plain = policy.infer(_observation())["actions"]
        torch.manual_seed(0)
        return plain, policy.infer({**_observation(), "prev_actions": prev, "inference_delay": 2})["actions"]

    plain, guided = answers()
    assert not np.allclose(guided[2:6], plain[2:6], atol=1e-3)
    policy.set_rtc(max_guidance_weight=0.0)  # no pull: past the frozen rows, the plain chunk
    try:
        assert policy.metadata["real_time_chunking"]["max_guidance_weight"] == 0.0
        plain, unguided = answers()
        np.testing.assert_allclose(unguided[2:], plain[2:], rtol=0, atol=1e-4)
        np.testing.assert_allclose(unguided[:2], prev[:2], rtol=0, atol=1e-5)
        with pytest.raises(ValueError, match="max guidance weight must be >= 0"):
            policy.set_rtc(max_guidance_weight=-1.0)
    finally:
        policy.set_rtc(max_guidance_weight=5.0)


def test_server_round_trips_the_optional_keys_with_openpi_client(policy):
    client_module = pytest.importorskip("openpi_client.websocket_client_policy")
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    port = server.start()
    try:
        client = client_module.WebsocketClientPolicy(host="127.0.0.1", port=port)
        assert client.get_server_metadata()["real_time_chunking"]["mode"] == "guided"
        plain = client.infer(_observation())  # an old client: observation keys only
        assert plain["actions"].shape == (HORIZON, ACTION_DIM)
        prev = plain["actions"][2:]
        answer = client.infer({**_observation(1), "prev_actions": prev, "inference_delay": 2})
        np.testing.assert_allclose(answer["actions"][:2], prev[:2], rtol=0, atol=1e-5)
        # The asynchronous runner through the same client: every switch lands on a chunk that kept its
        # frozen rows, and the loop never waited for the model after the first chunk.
        runner = ChunkRunner(client, execute_steps=4, control_period_s=0.005, rtc=True)
        for i in range(16):
            runner.act(_observation(i))
            time.sleep(0.005)
        runner.close()
        assert runner.stats.delays and all(d >= 1 for d in runner.stats.delays)
        assert len(runner.stats.latencies_s) == len(runner.stats.requested_delays) + 1
    finally:
        server.stop()
