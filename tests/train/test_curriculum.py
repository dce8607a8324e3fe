"""Three stages in one job: trainable parts and mixtures switch at the boundaries; a stage run alone
from the previous stage's checkpoint continues exactly like the whole job."""

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.train.helpers import losses_by_step, read_jsonl, train
from tests.train.standin import StandInVLA
from torchtitan_vla.config import ConfigError

SHORT = [f"--curriculum.stages.{s}.steps=3" for s in ("vlm", "cotrain", "finetune")] + ["--checkpoint.interval=100"]


def _weights(folder, tmp_path):
    out = tmp_path / f"{folder.name}.pt"
    dcp_to_torch_save(folder, out)
    return torch.load(out, weights_only=False)["model"]


def _initial_weights():
    torch.manual_seed(3)  # job.seed of standin.toml
    with torch.device("meta"):
        model = StandInVLA(horizon=4, action_dim=4, state_dim=3)
    model.to_empty(device="cpu")
    model.init_weights()
    return model.state_dict()


def _changed(before, after):
    return {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curriculum")
    rc, run = train(tmp, *SHORT)
    assert rc == 0
    return tmp, run


def test_trainable_parts_switch_at_stage_boundaries(full_run, tmp_path):
    _, run = full_run
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-3", "step-6", "step-9"], "stage-final checkpoints"
    init = _initial_weights()
    s1, s2, s3 = (_weights(ckpts / f"step-{n}", tmp_path) for n in (3, 6, 9))
    assert set(init) == set(s1)
    assert _changed(init, s1) == {"vision", "decoder"}
    assert _changed(s1, s2) == {"vision", "decoder", "expert"}
    assert _changed(s2, s3) == {"expert"}


def test_mixture_and_learning_rate_switch_at_stage_boundaries(full_run):
    _, run = full_run
    records = [r for r in read_jsonl(run) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 10))
    assert [r["stage"] for r in records] == ["vlm"] * 3 + ["cotrain"] * 3 + ["finetune"] * 3
    sources = {stage: set() for stage in ("vlm", "cotrain", "finetune")}
    for r in records:
        sources[r["stage"]] |= {k.split("/")[1] for k in r if k.startswith("loss_by_source/")}
    assert sources == {"vlm": {"web"}, "cotrain": {"web", "robot_a"}, "finetune": {"robot_b"}}
    # Each stage restarts its warmup from its own peak (finetune: optimizer.lr = 3e-3, expert only).
    assert records[0]["lr/decoder"] == pytest.approx(1e-2 / 3)
    assert records[6]["lr/expert"] == pytest.approx(3e-3 / 3)
    assert "lr/decoder" not in records[6]
    assert records[0]["loss/action"] == 0.0 and records[3]["loss/action"] > 0


def test_stage_run_alone_from_previous_stage_checkpoint_matches_the_whole_job(full_run):
    tmp, run = full_run
    rc, alone = train(
        tmp, *SHORT, "--curriculum.only_stage=finetune", f"--checkpoint.initial_load_path={run}/checkpoints/step-6",
        name="finetune_alone",
    )
    assert rc == 0
    whole, single = losses_by_step(read_jsonl(run)), losses_by_step(read_jsonl(alone))
    assert sorted(single) == [7, 8, 9]
    assert [single[s] for s in (7, 8, 9)] == pytest.approx([whole[s] for s in (7, 8, 9)], abs=1e-6)


def test_skipped_stage_is_left_out_and_the_next_starts_from_initialisation(full_run):
    """The ablation switch: without stage 'vlm' the job trains cotrain and finetune from the fresh model."""
    tmp, run = full_run
    rc, ablated = train(tmp, *SHORT, "--curriculum.skip_stages=vlm", name="without_vlm")
    assert rc == 0
    records = read_jsonl(ablated)
    assert sorted(losses_by_step(records)) == [4, 5, 6, 7, 8, 9]
    assert {r["stage"] for r in records} == {"cotrain", "finetune"}
    whole = losses_by_step(read_jsonl(run))
    assert losses_by_step(records)[4] != pytest.approx(whole[4], abs=1e-6), "cotrain must not start from vlm's weights"


@pytest.mark.parametrize("skip, message", [
    ("vlmm", r"skip_stages names \['vlmm'\], not stages"),
    ("vlm,cotrain,finetune", "leaves no stage to run"),
])
def test_bad_skip_stages_are_named(tmp_path, skip, message):
    with pytest.raises(ConfigError, match=message):
        train(tmp_path, f"--curriculum.skip_stages={skip}")
