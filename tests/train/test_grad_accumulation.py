"""Gradient accumulation: global_batch_size = 2 x local_batch_size trains exactly like one batch of that size
(losses are normalised by the counts of the whole step, not per micro-batch)."""

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tests.train.helpers import losses_by_step, read_jsonl, train

# Stage 'vlm' only: its loss is the deterministic text loss (the flow noise is drawn per forward, so a
# robot stage split into micro-batches draws different noise than one batch would).
VLM_ONLY = ["--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=3", "--checkpoint.interval=3"]


def _final_weights(run, tmp_path):
    out = tmp_path / f"{run.name}.pt"
    dcp_to_torch_save(run / "checkpoints" / "step-3", out)
    return torch.load(out, weights_only=False)["model"]


def test_two_micro_batches_equal_one_batch_of_twice_the_size(tmp_path):
    rc, whole = train(tmp_path, *VLM_ONLY, "--training.local_batch_size=8", name="batch8")
    assert rc == 0
    rc, split = train(tmp_path, *VLM_ONLY, "--training.local_batch_size=4", "--training.global_batch_size=8",
                      name="batch4x2")
    assert rc == 0
    whole_losses, split_losses = losses_by_step(read_jsonl(whole)), losses_by_step(read_jsonl(split))
    assert sorted(split_losses) == [1, 2, 3]
    assert [split_losses[s] for s in (1, 2, 3)] == pytest.approx([whole_losses[s] for s in (1, 2, 3)], rel=1e-5)
    a, b = _final_weights(whole, tmp_path), _final_weights(split, tmp_path)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)
    # ... and the weights did move (the comparison is not between two untouched models).
    rc, shorter = train(tmp_path, "--curriculum.only_stage=vlm", "--curriculum.stages.vlm.steps=3",
                        "--checkpoint.interval=3", "--training.local_batch_size=4", name="batch4")
    assert rc == 0
    c = _final_weights(shorter, tmp_path)
    assert any(not torch.allclose(a[n], c[n]) for n in a if n.startswith("decoder"))


def test_global_batch_that_is_not_a_multiple_is_named(tmp_path, capsys):
    rc, _ = train(tmp_path, *VLM_ONLY, "--training.local_batch_size=4", "--training.global_batch_size=6")
    assert rc == 2
    assert "global_batch_size=6 must be a multiple of training.local_batch_size=4" in capsys.readouterr().err
