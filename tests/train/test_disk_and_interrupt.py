"""A full disk during a save: one line naming the folder, exit 3, the unfinished save removed, the
previous checkpoints intact. Ctrl-C saves at the next step boundary like SIGTERM; a second one aborts."""

import errno
import os
import signal
import subprocess

import pytest
import torch.distributed.checkpoint.filesystem as dcp_filesystem

from tests.train.helpers import CONFIG, REPO, STANDIN_COMMAND, train
from torchtitan_vla.train.checkpoint import check_complete
from torchtitan_vla.train.main import EXIT_ABORTED, EXIT_DISK_FULL
from torchtitan_vla.train.signals import PreemptionHandler
from torchtitan_vla.train.trainer import Trainer

FULL_DISK_ERRORS = [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),  # torch.save's zip writer
]


@pytest.mark.parametrize("error", FULL_DISK_ERRORS, ids=["ENOSPC", "inline_container"])
def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoints(tmp_path, monkeypatch, capsys,
                                                                                error):
    real_write = dcp_filesystem._write_item
    saves = []

    def write_until_full(*args, **kwargs):
        if "step-4.tmp" in str(args):  # the disk fills up during the second save
            raise error
        saves.append(args)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(dcp_filesystem, "_write_item", write_until_full)
    rc, run = train(tmp_path, "--curriculum.only_stage=vlm", "--checkpoint.interval=2")
    err = capsys.readouterr().err
    assert rc == EXIT_DISK_FULL
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and str(run / "checkpoints") in lines[0], err
    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2"]  # no step-4.tmp left behind
    assert check_complete(checkpoints / "step-2") is None


def _interrupt(tmp_path) -> tuple[int, str]:
    long = ["--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=100000", "--checkpoint.interval=100000"]
    cmd = [*STANDIN_COMMAND, "--config", str(CONFIG), f"--job.dump_folder={tmp_path}", *long]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        for line in proc.stdout:
            if "step 3/" in line:
                proc.send_signal(signal.SIGINT)
                break
        out = proc.stdout.read()
        return proc.wait(timeout=120), out
    finally:
        proc.kill()


def test_ctrl_c_saves_at_the_next_step_boundary_and_exits_0(tmp_path):
    rc, out = _interrupt(tmp_path)
    assert rc == 0, out
    checkpoints = list((tmp_path / "standin" / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and check_complete(checkpoints[0]) is None
    assert "received SIGINT" in out and "preempted: state saved at step" in out and "Traceback" not in out


def test_second_ctrl_c_aborts_at_once():
    handler = PreemptionHandler()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert handler.requested  # the first one only asks for a save at the step boundary
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        handler.restore()


def test_an_abort_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(self, step):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_train_step", interrupted)
    rc, _ = train(tmp_path, "--curriculum.only_stage=vlm")
    err = capsys.readouterr().err
    assert rc == EXIT_ABORTED and "aborted by a second Ctrl-C" in err and len(err.strip().splitlines()) == 1
