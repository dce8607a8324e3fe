"""Meta-World: scripted demonstrations become a LeRobot v3.0 dataset, and a policy runs closed loop on it."""

import ctypes.util
import importlib.util
import json
import os

import numpy as np
import pytest

# Offscreen rendering needs a GL backend chosen before mujoco is imported: osmesa works on any CPU.
os.environ.setdefault("MUJOCO_GL", "osmesa")

if importlib.util.find_spec("metaworld") is None or importlib.util.find_spec("mujoco") is None:
    pytest.skip("metaworld/mujoco are not installed: pip install metaworld (see datasets/metaworld/README.md)",
                allow_module_level=True)
if os.environ["MUJOCO_GL"] == "osmesa" and ctypes.util.find_library("OSMesa") is None:
    pytest.skip("MUJOCO_GL=osmesa needs libOSMesa: apt-get install -y libosmesa6 (see datasets/metaworld/README.md)",
                allow_module_level=True)

from torchtitan_vla.data.lerobot import LeRobotReader  # noqa: E402
from torchtitan_vla.eval import metaworld as mw  # noqa: E402
from torchtitan_vla.serve.debug_policy import export_debug_policy  # noqa: E402
from torchtitan_vla.serve.policy import Policy  # noqa: E402
from torchtitan_vla.serve.server import PolicyServer  # noqa: E402


@pytest.mark.filterwarnings("ignore::DeprecationWarning:openpi_client.*", "ignore:Constant\\(s\\) may be too high:UserWarning")
def test_demonstration_dataset_and_closed_loop_episode(tmp_path):
    report = mw.generate_demonstrations(str(tmp_path / "demos"), ["reach-v3"], episodes_per_task=1, image_size=64)
    assert report.scripted_success == {"reach-v3": 1.0} and report.episodes_written == 1

    info = json.loads((tmp_path / "demos/meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    reader = LeRobotReader(str(tmp_path / "demos"))
    assert reader.camera_keys == [mw.CAMERA_KEY]
    assert reader.state.shape[1] == mw.STATE_DIM and reader.action.shape[1] == mw.ACTION_DIM
    assert [ep.task for ep in reader.episodes] == ["reach the goal position"]
    assert np.abs(reader.action).max() <= 1.0

    # An untrained policy exported on these demonstrations, evaluated for one short episode in-process
    # and once more through the server with openpi's client: the loop runs and reports per task + mean.
    folder = export_debug_policy(tmp_path / "export", [mw.CAMERA_KEY], mw.STATE_DIM, mw.ACTION_DIM,
                                 dataset=str(tmp_path / "demos"))
    policy = Policy.from_export(folder)
    result = mw.evaluate(policy, ["reach-v3"], episodes_per_task=1, max_steps=8, replan_steps=4, image_size=64)
    assert set(result.success) == {"reach-v3"} and result.success["reach-v3"] in (0.0, 1.0)
    assert result.mean_success == result.success["reach-v3"]

    client_module = pytest.importorskip("openpi_client.websocket_client_policy")
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    server.start()
    try:
        client = client_module.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        served = mw.evaluate(client, ["reach-v3"], episodes_per_task=1, max_steps=4, replan_steps=4, image_size=64)
        assert set(served.success) == {"reach-v3"}
    finally:
        server.stop()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="reach-v4"):
        mw.resolve_tasks("reach-v3,reach-v4")
    with pytest.raises(ValueError, match="max_steps=600"):
        mw.evaluate(policy=None, tasks=["reach-v3"], max_steps=600)
