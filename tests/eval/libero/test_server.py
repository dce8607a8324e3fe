"""A policy served over openpi's websocket protocol (the project's PolicyServer, openpi's own client): the
harness evaluates through it, and a server that goes away mid-run is one line naming it, finished
episodes kept."""

import json
import socket
import threading

import pytest

from tests.eval.libero.helpers import fake_options, seek_chunk
from torchtitan_vla.eval.libero.evaluate import EvaluationStopped, PolicySource, run
from torchtitan_vla.eval.libero.policies import PolicyMismatch, ServerLost, ServerPolicy
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.server import PolicyServer
from torchtitan_vla.tools.debug_policy import export_debug_policy
from torchtitan_vla.utils.checksums import export_content_hash

pytest.importorskip("openpi_client.websocket_client_policy")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:openpi_client.*")


class ServedSeeker:
    """An InferencePolicy for PolicyServer that answers like tests' GoalSeeker and counts its calls."""

    def __init__(self, action_dim=7, stop_after=None):
        self.metadata = {"action_dim": action_dim, "state_dim": 8, "action_horizon": 8}
        self.max_observation_bytes = 2 * 3 * 256 * 256
        self.calls = 0
        self.stop_after = stop_after
        self.reached = threading.Event()

    def prepare(self, obs):
        return obs

    def infer_prepared(self, prepared):
        self.calls += len(prepared)
        if self.stop_after is not None and self.calls >= self.stop_after:
            self.reached.set()
        return [{"actions": seek_chunk(obs)} for obs in prepared]


def serve(policy):
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    server.start()
    return server, f"127.0.0.1:{server.port}"


def test_served_policy_is_evaluated_and_a_lost_server_is_named(tmp_path):
    served = ServedSeeker(stop_after=5)  # each episode asks twice: two finish before the server goes away
    server, address = serve(served)
    threading.Thread(target=lambda: (served.reached.wait(60), server.stop()), daemon=True).start()

    def open_policy():
        policy = ServerPolicy(address, connections=1, replan_steps=5)
        return PolicySource({"policy": {"kind": "server"}, "checkpoint_hash": "sha256:test"}, batch_policy=policy)

    with pytest.raises(EvaluationStopped) as stopped:
        run(fake_options(tmp_path, tasks="0", init_states="0-9"), open_policy)
    assert stopped.value.exit_code == 1
    message = str(stopped.value)
    assert message.startswith(f"policy server {address} went away mid-episode")
    assert "\n" not in message and "finished episodes are kept in" in message
    document = json.loads((tmp_path / "results.json").read_text())
    assert len(document["episodes"]) >= 2 and all(e["success"] for e in document["episodes"])
    assert not document["complete"]


def test_no_server_and_mismatched_server_are_named():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerLost, match=f"^no policy server at 127.0.0.1:{port} "):
        ServerPolicy(f"127.0.0.1:{port}", connections=1, replan_steps=5)
    server, address = serve(ServedSeeker(action_dim=14))
    try:
        with pytest.raises(PolicyMismatch, match=f"^the policy served at {address} has action_dim 14; LIBERO's"):
            ServerPolicy(address, connections=2, replan_steps=5)
    finally:
        server.stop()


def test_a_served_export_reports_the_hash_of_its_weights(tmp_path):
    """The server sends the export's content hash, so a result evaluated over the network names the same
    checkpoint as one evaluated in-process (and its table can be rendered)."""
    export = export_debug_policy(tmp_path, ["observation.images.image", "observation.images.wrist_image"], 8, 7,
                                 horizon=8)
    server, address = serve(Policy.from_export(export))
    try:
        assert ServerPolicy(address, connections=1, replan_steps=5).metadata["content_hash"] == \
            export_content_hash(export)
    finally:
        server.stop()
