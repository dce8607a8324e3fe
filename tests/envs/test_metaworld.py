"""Meta-World as an environment: scripted demonstrations become a LeRobot v3.0 dataset."""

import json

import numpy as np
import pytest

from tests.envs.helpers import require_metaworld

require_metaworld()

from torchtitan_vla.data.lerobot import LeRobotReader  # noqa: E402
from torchtitan_vla.envs import metaworld as mw  # noqa: E402


@pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high:UserWarning")
def test_demonstration_dataset(tmp_path):
    report = mw.generate_demonstrations(str(tmp_path / "demos"), ["reach-v3"], episodes_per_task=1, image_size=64)
    assert report.scripted_success == {"reach-v3": 1.0} and report.episodes_written == 1

    info = json.loads((tmp_path / "demos/meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    reader = LeRobotReader(str(tmp_path / "demos"))
    assert reader.camera_keys == [mw.CAMERA_KEY]
    assert reader.state.shape[1] == mw.STATE_DIM and reader.action.shape[1] == mw.ACTION_DIM
    assert [ep.task for ep in reader.episodes] == ["reach the goal position"]
    assert np.abs(reader.action).max() <= 1.0
    assert (tmp_path / "demos" / mw.DEBUG_TOKENIZER).is_file()


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="reach-v4"):
        mw.resolve_tasks("reach-v3,reach-v4")
