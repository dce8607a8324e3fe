"""The policy server, driven by openpi's own client, on loopback with a real tiny exported VLA."""

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.sync.client import connect

from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.protocol import packb
from torchtitan_vla.serve.server import PolicyServer
from torchtitan_vla.tools.debug_policy import export_debug_policy

# openpi_client 0.1.2 opens its connection the way websockets >= 14 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

websocket_client_policy = pytest.importorskip(
    "openpi_client.websocket_client_policy", reason="openpi-client is not installed (pip install openpi-client)"
)

CAMERAS = ["observation.images.front", "observation.images.wrist"]
STATE_DIM, ACTION_DIM, HORIZON = 6, 5, 4


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return export_debug_policy(tmp_path_factory.mktemp("export"), CAMERAS, STATE_DIM, ACTION_DIM, horizon=HORIZON)


@pytest.fixture(scope="module")
def policy(export_dir):
    return Policy.from_export(export_dir)


@pytest.fixture(scope="module")
def server(policy):
    srv = PolicyServer(policy, host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.stop()


def _observation(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "observation/image": rng.integers(0, 256, (80, 96, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=STATE_DIM).astype(np.float32),
        "prompt": "pick up the red cube",
    }


def _client(port, api_key=None):
    return websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key=api_key)


def test_openpi_client_gets_metadata_and_action_chunks(server):
    client = _client(server.port)
    meta = client.get_server_metadata()
    assert meta["action_horizon"] == HORIZON and meta["action_dim"] == ACTION_DIM
    assert meta["observation_keys"]["images"] == {"observation/image": CAMERAS[0], "observation/wrist_image": CAMERAS[1]}
    for seed in range(2):  # one chunk per observation, several on one connection
        result = client.infer(_observation(seed))
        assert result["actions"].shape == (HORIZON, ACTION_DIM)
        assert result["actions"].dtype == np.float32
        assert np.isfinite(result["actions"]).all()
        assert result["server_timing"]["infer_ms"] > 0


def test_health_check(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"OK\n"


def test_malformed_observation_gets_an_error_frame_without_traceback_and_server_stays_up(server):
    client = _client(server.port)
    bad = _observation()
    bad["observation/state"] = np.zeros(STATE_DIM + 3, np.float32)
    with pytest.raises(RuntimeError, match=r"observation/state.*6 values"):
        client.infer(bad)
    missing = _observation()
    del missing["observation/wrist_image"]
    with pytest.raises(RuntimeError, match="observation/wrist_image"):
        client.infer(missing)
    # A refused request leaves the connection open: the same client is served next.
    assert client.infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)
    with connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None) as ws:
        ws.recv()  # metadata
        ws.send(b"\xc1 not msgpack")
        error = ws.recv()
        assert error.startswith("the message is not msgpack-numpy")
        assert "Traceback" not in error and ".py" not in error and "/" not in error
    assert _client(server.port).infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)


class _FailingPolicy:
    """The real policy whose model call fails with a message that holds a server path."""

    def __init__(self, policy):
        self.policy, self.metadata, self.max_observation_bytes = policy, policy.metadata, policy.max_observation_bytes

    def prepare(self, obs):
        return self.policy.prepare(obs)

    def infer_prepared(self, prepared):
        raise RuntimeError("CUDA error in /srv/secret/torchtitan_vla/models/vla/model.py line 12")


def test_internal_errors_reach_the_log_not_the_client(policy, caplog):
    srv = PolicyServer(_FailingPolicy(policy), host="127.0.0.1", port=0)
    srv.start()
    try:
        with connect(f"ws://127.0.0.1:{srv.port}", compression=None, max_size=None) as ws:
            ws.recv()
            ws.send(packb(_observation()))
            error = ws.recv()
            assert "internal server error" in error
            assert "secret" not in error and "Traceback" not in error and ".py" not in error
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd.code == CloseCode.INTERNAL_ERROR
        assert "/srv/secret/torchtitan_vla/models/vla/model.py" in caplog.text  # the operator sees it all
    finally:
        srv.stop()


@pytest.mark.parametrize("image, problem", [
    (np.zeros((0, 0, 3), np.uint8), r"sides \(0, 0\): each must be between 1 and 1024"),
    (np.zeros((0, 64, 3), np.uint8), r"sides \(0, 64\)"),
    (np.zeros((2000, 16, 3), np.uint8), r"between 1 and 1024 pixels"),
    (np.zeros((64, 64, 3), np.float32), "must be a uint8 image, got dtype float32"),
    (np.zeros((64, 64, 4), np.uint8), r"\(H, W, 3\) or \(3, H, W\) image, got shape \(64, 64, 4\)"),
    (np.zeros((64, 64), np.uint8), r"got shape \(64, 64\)"),
])
def test_images_the_policy_cannot_use_get_an_error_frame_not_actions(server, image, problem):
    client = _client(server.port)
    obs = _observation()
    obs["observation/wrist_image"] = image
    with pytest.raises(RuntimeError, match=rf"observation 'observation/wrist_image'.*{problem}"):
        client.infer(obs)
    chw = _observation()
    chw["observation/wrist_image"] = np.ascontiguousarray(chw["observation/wrist_image"].transpose(2, 0, 1))
    assert client.infer(chw)["actions"].shape == (HORIZON, ACTION_DIM)  # CHW is fine


def test_oversized_message_is_refused_and_server_stays_up(policy):
    srv = PolicyServer(policy, host="127.0.0.1", port=0, max_message_bytes=300_000)
    srv.start()
    try:
        big = _observation()
        big["observation/image"] = np.zeros((400, 400, 3), np.uint8)  # 480 KB
        with pytest.raises(ConnectionClosed) as closed:
            _client(srv.port).infer(big)
        assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
        assert "exceeds limit of 300000 bytes" in closed.value.rcvd.reason
        # Refused from the frame header alone: a frame announcing 400 MB gets its answer at once, while
        # none of its payload has been sent (the server never buffers it).
        with connect(f"ws://127.0.0.1:{srv.port}", compression=None, max_size=None) as ws:
            ws.recv()
            ws.socket.sendall(b"\x82\xff" + (400 * 2**20).to_bytes(8, "big") + b"\x00\x00\x00\x00")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=20)
            assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
        assert _client(srv.port).infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)
    finally:
        srv.stop()


def test_default_message_limit_follows_the_largest_accepted_observation(policy):
    # Two cameras of at most 1024 x 1024 x 3 bytes: twice that plus 1 MiB.
    assert PolicyServer(policy, port=0).max_message_bytes == 2 * 2 * 3 * 1024**2 + 2**20


def test_batched_inference_equals_one_at_a_time(policy):
    observations = [_observation(seed) for seed in range(3)]
    observations[1]["prompt"] = "open the top drawer of the cabinet and put the bowl inside it"  # another length
    torch.manual_seed(0)
    batched = policy.infer_batch(observations)
    torch.manual_seed(0)
    single = [policy.infer(obs) for obs in observations]
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b["actions"], s["actions"], rtol=1e-5, atol=1e-5)
    assert [r["policy_timing"]["batch_size"] for r in batched] == [3, 3, 3]
    assert len({r["actions"].tobytes() for r in batched}) == 3  # each request has its own noise


def _concurrently(fn, n):
    barrier = threading.Barrier(n)

    def call(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_concurrent_clients_share_one_policy_call_with_one_at_a_time_results(policy):
    srv = PolicyServer(policy, host="127.0.0.1", port=0, max_batch=4, max_wait_ms=500)
    srv.start()
    try:
        clients = [_client(srv.port) for _ in range(4)]
        obs = _observation()
        torch.manual_seed(0)
        served = _concurrently(lambda i: clients[i].infer(obs), 4)
    finally:
        srv.stop()
    assert [r["server_timing"]["batch_size"] for r in served] == [4] * 4
    torch.manual_seed(0)
    expected = [policy.infer(obs)["actions"] for _ in range(4)]
    # Which client got which noise draw depends on arrival order; the set of chunks does not.
    served_actions = sorted((r["actions"] for r in served), key=lambda a: a.sum())
    for got, want in zip(served_actions, sorted(expected, key=lambda a: a.sum())):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class _SlowPolicy(_FailingPolicy):
    def infer_prepared(self, prepared):
        time.sleep(1.0)
        return self.policy.infer_prepared(prepared)


def test_full_queue_answers_server_busy(policy):
    srv = PolicyServer(_SlowPolicy(policy), host="127.0.0.1", port=0, max_batch=1, max_queue=1)
    srv.start()
    try:
        first, *others = [_client(srv.port) for _ in range(3)]
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(first.infer, _observation())
            time.sleep(0.3)  # the first request is in the policy; one more may wait, the next is refused

            def attempt(i):
                try:
                    return others[i].infer(_observation())
                except RuntimeError as exc:
                    return str(exc)

            outcomes = _concurrently(attempt, 2)
            assert running.result()["actions"].shape == (HORIZON, ACTION_DIM)
        refused = [o for o in outcomes if isinstance(o, str)]
        assert len(refused) == 1 and "server busy: 1 requests are already waiting" in refused[0]
        assert [o["actions"].shape for o in outcomes if isinstance(o, dict)] == [(HORIZON, ACTION_DIM)]
        assert others[0].infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)  # busy is not fatal
    finally:
        srv.stop()


def test_api_key_is_required_when_set(policy):
    srv = PolicyServer(policy, host="127.0.0.1", port=0, api_key="s3cret")
    srv.start()
    try:
        with pytest.raises(Exception, match="401"):
            _client(srv.port)
        with pytest.raises(Exception, match="401"):
            _client(srv.port, api_key="wrong")
        assert _client(srv.port, api_key="s3cret").infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)
        # The health check needs no key (load balancers and probes have none).
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        srv.stop()


def test_command_line_serves_on_loopback(export_dir, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchtitan_vla.serve", "--checkpoint", str(export_dir), "--port", "0",
         "--max-image-side", "96", "--max-message-mb", "0.1", "--max-batch", "2", "--max-queue", "4"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            match = re.search(r"serving on ws://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else None
        assert port is not None, "the server did not report a loopback address"
        client = _client(port)
        with pytest.raises(RuntimeError, match="between 1 and 96 pixels"):
            client.infer({**_observation(), "observation/image": np.zeros((97, 10, 3), np.uint8)})
        assert client.infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)
        with pytest.raises(ConnectionClosed, match="exceeds limit of 104857 bytes"):
            client.infer({**_observation(), "observation/image": np.zeros((90, 90, 3), np.uint8),
                          "observation/wrist_image": np.zeros((90, 90, 3), np.uint8), "pad": np.zeros(80_000, np.uint8)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
