"""The policy server, driven by openpi's own client, on loopback with a real tiny exported VLA."""

import os
import re
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.sync.client import connect

from torchtitan_vla.serve.policy import Policy
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


def test_malformed_observation_gets_traceback_and_server_stays_up(server):
    client = _client(server.port)
    bad = _observation()
    bad["observation/state"] = np.zeros(STATE_DIM + 3, np.float32)
    with pytest.raises(RuntimeError, match=r"observation/state.*6 values"):
        client.infer(bad)
    missing = _observation()
    del missing["observation/wrist_image"]
    with pytest.raises(RuntimeError, match="observation/wrist_image"):
        _client(server.port).infer(missing)
    # On the wire: the traceback as a text frame, then a close with code 1011 (internal error).
    with connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None) as ws:
        ws.recv()  # metadata
        ws.send(b"\xc1 not msgpack")
        assert "Traceback" in ws.recv()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
        assert closed.value.rcvd.code == CloseCode.INTERNAL_ERROR
    # The next client is served as if nothing happened.
    assert _client(server.port).infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)


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
        [sys.executable, "-m", "torchtitan_vla.serve", "--checkpoint", str(export_dir), "--port", "0"],
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
        assert _client(port).infer(_observation())["actions"].shape == (HORIZON, ACTION_DIM)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
