"""Checkpoint verification: per-file CRC-32 in COMPLETE.json, checked on load; any corrupt or unreadable
checkpoint is skipped with a warning naming the file, an explicit bad ``load_step`` is a one-line error."""

import json

import pytest
import torch

from tests.train.test_checkpoint import _save, warnings_seen  # noqa: F401 (fixture)
from torchtitan_vla.config.checkpoint import Checkpoint
from torchtitan_vla.train.checkpoint import MARKER, CheckpointManager, check_complete, load_into


def _flip(path, offset=-20):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _zero(path):
    path.write_bytes(bytes(path.stat().st_size))


def _distcp(folder):
    return next(p for p in folder.iterdir() if p.suffix == ".distcp")


@pytest.mark.parametrize("damage, culprit", [
    (lambda f: _flip(_distcp(f)), ".distcp"),        # a flipped byte in a tensor: same size, wrong values
    (lambda f: _flip(f / ".metadata", 40), ".metadata"),
    (lambda f: _zero(_distcp(f)), ".distcp"),         # a zeroed shard
    (lambda f: (f / MARKER).write_bytes(b"\xff\xfe{"), MARKER),
])
def test_corrupt_newest_checkpoint_falls_back_with_a_warning_naming_the_file(tmp_path, warnings_seen, damage,  # noqa: F811
                                                                              culprit):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=0))
    _save(manager, 2, 1.0)
    _save(manager, 4, 2.0)
    marker = json.loads((tmp_path / "step-4" / MARKER).read_text())
    assert set(marker["crc32"]) == set(marker["files"])  # every file has its checksum
    damage(tmp_path / "step-4")

    info = manager.find_resume()
    assert info.step == 2
    message = " ".join(r.getMessage() for r in warnings_seen)
    assert "step-4" in message and culprit in message
    state = {"w": {"x": torch.zeros(64)}}
    load_into(info.path, state)
    assert torch.equal(state["w"]["x"], torch.full((64,), 1.0))


def test_explicit_load_step_of_a_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=0))
    _save(manager, 3, 1.0)
    _flip(_distcp(tmp_path / "step-3"))
    with pytest.raises(FileNotFoundError, match=r"load_step=3.*\.distcp is corrupt") as err:
        manager.find_resume(load_step=3)
    assert "\n" not in str(err.value)


def test_a_corrupt_checkpoint_is_not_counted_complete_but_purging_does_not_read_every_file(tmp_path):
    manager = CheckpointManager(tmp_path, Checkpoint(keep_latest_k=0))
    _save(manager, 1, 1.0)
    _flip(_distcp(tmp_path / "step-1"))
    assert "corrupt" in check_complete(tmp_path / "step-1")
    assert check_complete(tmp_path / "step-1", verify_checksums=False) is None
