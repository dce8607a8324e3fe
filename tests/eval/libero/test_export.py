"""An exported policy in the main process: batched calls through ``serve.Policy``, its widths checked against
LIBERO's before anything starts, and its content hash in the results."""

import shutil

import pytest

from torchtitan_vla.eval.libero.evaluate import PolicySource, run
from torchtitan_vla.eval.libero.policies import ExportPolicy, PolicyMismatch
from torchtitan_vla.tools.debug_policy import export_debug_policy
from torchtitan_vla.utils.checksums import export_content_hash

from .helpers import fake_options

CAMERAS = ["observation.images.image", "observation.images.wrist_image"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_debug_policy(tmp_path_factory.mktemp("export"), CAMERAS, 8, 7, horizon=8)


def test_exported_policy_runs_batched_and_records_its_hash(export, tmp_path):
    policy = ExportPolicy(str(export), replan_steps=5)
    calls = []
    infer_batch = policy.policy.infer_batch
    policy.policy.infer_batch = lambda observations: calls.append(len(observations)) or infer_batch(observations)
    digest = export_content_hash(export)
    source = PolicySource({"policy": {"kind": "export"}, "checkpoint_hash": digest}, batch_policy=policy)
    document = run(fake_options(tmp_path, tasks="0", init_states="0-1", workers=2, image_size=32, max_steps=10,
                                batch_wait_ms=5000), lambda: source)
    assert document["complete"] and all(e["steps"] == 10 for e in document["episodes"])
    assert sum(calls) == 2 * 2 and max(calls) == 2  # both episodes' requests in one model call
    assert document["provenance"]["checkpoint_hash"] == digest and digest.startswith("sha256:")


def test_content_hash_follows_the_bytes(export, tmp_path):
    copy = shutil.copytree(export, tmp_path / "copy")  # same bytes elsewhere: same hash
    other = export_debug_policy(tmp_path / "other", CAMERAS, 8, 7, horizon=8, seed=1)
    assert export_content_hash(copy) == export_content_hash(export) != export_content_hash(other)


@pytest.mark.parametrize("widths, message", [
    (dict(action_dim=14), "has action_dim 14; LIBERO's actions are 7-D"),
    (dict(state_dim=6), "has state_dim 6; LIBERO's state is 8-D"),
    (dict(horizon=4), "predicts 4 actions per chunk; --replan-steps 5 needs at least that many"),
])
def test_mismatched_export_is_named_before_any_simulator_starts(tmp_path, widths, message):
    args = {"action_dim": 7, "state_dim": 8, "horizon": 8, **widths}
    folder = export_debug_policy(tmp_path, CAMERAS, args["state_dim"], args["action_dim"], horizon=args["horizon"])
    with pytest.raises(PolicyMismatch, match=f"^checkpoint {folder} {message}"):
        ExportPolicy(str(folder), replan_steps=5)
