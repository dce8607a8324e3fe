"""Closed-loop evaluation on Meta-World: an exported policy runs in-process and behind the policy server."""

import pytest

from tests.envs.helpers import require_metaworld

require_metaworld()

from torchtitan_vla.envs import metaworld as env  # noqa: E402
from torchtitan_vla.eval import metaworld as mw  # noqa: E402
from torchtitan_vla.serve.policy import Policy  # noqa: E402
from torchtitan_vla.serve.server import PolicyServer  # noqa: E402
from torchtitan_vla.tools.debug_policy import export_debug_policy  # noqa: E402


@pytest.mark.filterwarnings("ignore::DeprecationWarning:openpi_client.*", "ignore:Constant\\(s\\) may be too high:UserWarning")
def test_closed_loop_episode_in_process_and_served(tmp_path):
    # An untrained policy with Meta-World's camera and widths, evaluated for one short episode in-process
    # and once more through the server with openpi's client: the loop runs and reports per task + mean.
    folder = export_debug_policy(tmp_path, [env.CAMERA_KEY], env.STATE_DIM, env.ACTION_DIM)
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
    with pytest.raises(ValueError, match="max_steps=600"):
        mw.evaluate(policy=None, tasks=["reach-v3"], max_steps=600)
    with pytest.raises(ValueError, match="replan_steps"):
        mw.evaluate(policy=None, tasks=["reach-v3"], replan_steps=0)


def test_cli_keeps_its_commands(capsys):
    # `python -m torchtitan_vla.eval.metaworld` is the documented entry point of all three recipes.
    with pytest.raises(SystemExit) as exit_info:
        mw.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("generate", "scripted", "evaluate"))


def test_simulated_delay_sends_the_rtc_keys_and_keeps_the_frozen_rows(tmp_path):
    import numpy as np

    from torchtitan_vla.eval.delay import DelaySchedule

    folder = export_debug_policy(tmp_path, [env.CAMERA_KEY], env.STATE_DIM, env.ACTION_DIM, horizon=8)
    policy = Policy.from_export(folder)
    seen = []

    class Recorder:
        def infer(self, obs):
            result = policy.infer(obs)
            seen.append((obs.get("prev_actions"), obs.get("inference_delay"), result["actions"]))
            return result

    report = mw.evaluate(Recorder(), ["reach-v3"], episodes_per_task=1, max_steps=12, replan_steps=4, image_size=64,
                         schedule=DelaySchedule("rtc", 2))
    assert seen[0][0] is None and len(seen) >= 3
    # The first switch: the last action run from chunk 0 (row 3) against row 2 of chunk 1 (RTC froze rows 0-1).
    first_jump = float(np.linalg.norm(seen[1][2][2, :env.ACTION_DIM] - seen[0][2][3, :env.ACTION_DIM]))
    assert report.max_jump >= first_jump > 0 and report.mean_jump > 0
    for (prev, delay, actions), (_, _, before) in zip(seen[1:], seen):
        assert delay == 2 and prev.shape == (8 - 2, env.ACTION_DIM)
        np.testing.assert_array_equal(prev, before[2:])  # requested 2 steps before row 4 of the last chunk
        np.testing.assert_allclose(actions[:2], prev[:2], rtol=0, atol=1e-5)
