"""The non-finite guard: injected NaN losses are skipped and counted; K in a row stop the run."""

from tests.train.helpers import read_jsonl, train

STAGE = ["--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=4", "--checkpoint.enable=false"]


def test_a_nan_step_is_skipped_and_counted(tmp_path, capsys):
    rc, run = train(tmp_path, *STAGE, "--debug.inject_nonfinite_steps=[2]")
    assert rc == 0
    records = read_jsonl(run)
    assert [r["nonfinite_skipped"] for r in records] == [0, 1, 1, 1]
    assert records[1]["grad_norm"] is None  # NaN, written as JSON null
    assert "step 2: non-finite loss or gradient norm" in capsys.readouterr().out


def test_k_nan_steps_in_a_row_stop_with_a_clear_message(tmp_path, capsys):
    rc, _ = train(
        tmp_path, *STAGE, "--debug.inject_nonfinite_steps=[2, 3]", "--training.max_consecutive_nonfinite=2"
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert "stopping at step 3: 2 consecutive steps had a non-finite loss" in out
    assert "training.max_consecutive_nonfinite=2" in out
