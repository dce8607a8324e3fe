"""TP x FSDP on 4 processes (gloo: tp=2 inside dp_shard=2) against one process, run under
``torchrun --nproc_per_node=4`` by test_tp_fsdp.py: the loss trajectory, every first-step gradient by
component, and the tiny VLM's HF export loaded into the 2-D layout (rows split by FSDP and by TP,
columns by TP). Each data-parallel rank reads half of the global batch; the reference sees both halves
as two micro-batches, seeded by ``SeededByBatch`` like the other distributed checks."""

from __future__ import annotations

import copy

from tests.distributed_helper import run_checks
from tests.models.vla.helpers import make_batch, tiny_vla
from tests.parallel.dist_checks import GLOBAL_BATCH, full_grads, micro_step, sharded_copy, split, train
from tests.parallel.tp_checks import check_hf_loading, component_of, relative_error, tp_config

STEPS = 3


def first_step_grads(model, dims) -> dict:
    batch = make_batch(model, batch_size=GLOBAL_BATCH, seed=7)
    if dims is None:
        micro_step(model, [split(batch, r, 2) for r in range(2)], None, step=0)
    else:
        micro_step(model, [split(batch, dims.dp_rank, dims.dp_world_size)], dims.dp_mesh, step=0)
    return full_grads(model)


def check_parity(reference) -> dict:
    # SGD, clipped: unlike AdamW's, its steps scale with the gradient norm, which is then checked too.
    model, dims = sharded_copy(reference, tp_config(tp=2, shard=2))
    assert (dims.dp_shard, dims.tp) == (2, 2), dims
    losses = train(model, dims, STEPS, sgd=True)[0]
    ref_losses = train(copy.deepcopy(reference), None, STEPS, sgd=True)[0]
    want = first_step_grads(copy.deepcopy(reference), None)
    model, dims = sharded_copy(reference, tp_config(tp=2, shard=2))
    got = first_step_grads(model, dims)
    errors: dict[str, float] = {}
    for name, grad in want.items():
        if grad is not None:
            part = component_of(model, name)
            errors[part] = max(errors.get(part, 0.0), relative_error(got[name], grad))
    return {"losses": losses, "reference": ref_losses, "grad_error": errors}


def checks() -> dict:
    joint = tiny_vla()
    return {"parity": lambda: check_parity(joint), "hf": lambda: check_hf_loading(joint, tp_config(tp=2, shard=2))}


if __name__ == "__main__":
    run_checks(checks)
