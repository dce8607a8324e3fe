import logging

import pytest
import torch

from tests.train.helpers import train
from torchtitan_vla.config.checkpoint import Checkpoint
from torchtitan_vla.train.checkpoint import CheckpointManager, check_complete, load_into
from torchtitan_vla.utils.logging import logger


def _save(manager, step, value, final=False):
    manager.track(w={"x": torch.full((64,), float(value))})
    manager.save(step, {"stage": "s", "stage_final": final})


@pytest.fixture
def warnings_seen():
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, warnings_seen):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=0))
    _save(manager, 2, 1.0)
    _save(manager, 4, 2.0)
    shard = next(p for p in (tmp_path / "step-4").iterdir() if p.suffix == ".distcp")
    shard.write_bytes(shard.read_bytes()[:10])  # a copy cut short
    assert "truncated" in check_complete(tmp_path / "step-4")

    info = manager.find_resume()
    assert info.step == 2
    assert any("step-4" in r.getMessage() for r in warnings_seen)
    state = {"w": {"x": torch.zeros(64)}}
    load_into(info.path, state)
    assert torch.equal(state["w"]["x"], torch.full((64,), 1.0))


def test_a_folder_without_completion_marker_is_never_picked(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=0))
    _save(manager, 3, 1.0)
    (tmp_path / "step-9").mkdir()  # e.g. a copy that stopped before the marker
    assert manager.find_resume().step == 3
    (tmp_path / "step-12.tmp").mkdir()  # an interrupted save is cleaned up at start
    CheckpointManager(tmp_path, Checkpoint())
    assert not (tmp_path / "step-12.tmp").exists()


def test_explicit_bad_step_is_a_clear_error(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint())
    _save(manager, 3, 1.0)
    with pytest.raises(FileNotFoundError, match=r"load_step=7.*step-7.*complete checkpoints: \[3\]"):
        manager.find_resume(load_step=7)
    assert manager.find_resume(load_step=3).step == 3


def test_keep_latest_k_never_deletes_stage_final_checkpoints(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=2))
    _save(manager, 1, 1.0, final=True)
    for step in (2, 3, 4, 5):
        _save(manager, step, step)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1", "step-4", "step-5"]


def test_async_save_publishes_on_wait(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint(async_mode="async"))
    _save(manager, 5, 1.0)
    manager.wait()
    assert check_complete(tmp_path / "step-5") is None


def test_run_with_unknown_load_step_exits_2_naming_the_key(tmp_path, capsys):
    rc, _ = train(tmp_path, "--checkpoint.load_step=5", "--curriculum.only_stage=vlm")
    assert rc == 2
    assert "checkpoint.load_step=5" in capsys.readouterr().err


def test_missing_initial_load_path_is_a_clear_error(tmp_path, capsys):
    rc, _ = train(tmp_path, f"--checkpoint.initial_load_path={tmp_path}/nope", "--curriculum.only_stage=vlm")
    assert rc == 2
    assert "checkpoint.initial_load_path" in capsys.readouterr().err
