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


def test_a_checkpoint_that_passes_the_checks_but_does_not_load_falls_back_and_resumes_exactly(tmp_path, capfd):
    """A checkpoint written before checksums were recorded (no ``crc32`` in its marker) and damaged since:
    the resume skips it with a warning naming it, loads the previous one and trains on exactly as a run
    that was never interrupted."""
    from tests.train.helpers import losses_by_step, read_jsonl, train

    stage = ("--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=6", "--checkpoint.interval=2",
             "--checkpoint.keep_latest_k=0")
    rc, reference = train(tmp_path / "ref", *stage)
    assert rc == 0
    rc, run = train(tmp_path / "run", *stage[:2], "--curriculum.stages.vlm.steps=4", *stage[2:])
    assert rc == 0
    newest = run / "checkpoints" / "step-4"
    marker = json.loads((newest / MARKER).read_text())
    del marker["crc32"]
    (newest / MARKER).write_text(json.dumps(marker))
    _zero(newest / ".metadata")

    capfd.readouterr()
    rc, run = train(tmp_path / "run", *stage)
    assert rc == 0
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert "step-4 could not be loaded (UnpicklingError" in log and "falling back to an older one" in log
    expected = losses_by_step(read_jsonl(reference))
    assert {s: v for s, v in losses_by_step(read_jsonl(run)).items() if s > 2} == {s: v for s, v in expected.items() if s > 2}
