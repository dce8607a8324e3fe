"""Expert-parallel checks on the tiny MoE VLA (``debug-moe``: experts in decoder layers 1 and 3), run
under ``torchrun --nproc_per_node=2`` (gloo) by test_expert_parallel.py: EP=2 against one process on the
same global batch with deliberately uneven routing (losses over several steps, gradients, with and without
activation checkpointing), the shards EP leaves, DCP checkpoints moved EP=2 -> FSDP -> EP=2, and the HF
read and write paths under EP.

The reference is the plain single-process model on the whole global batch, as in dist_checks.
"""

from __future__ import annotations

import copy

import torch
from torch.distributed.tensor import DTensor

from tests.distributed_helper import run_checks
from tests.models.vla.helpers import make_batch
from tests.parallel.dist_checks import (
    GLOBAL_BATCH,
    full_grads,
    hf_loaded_copy,
    job_config,
    lm_head_logits,
    micro_step,
    sharded_copy,
    split,
    train,
)
from tests.parallel.tp_checks import relative_error, saved_and_reloaded_loss, step_grads, train_whole
from torchtitan_vla.config.model import ActionExpert, Model
from torchtitan_vla.models.qwen3_vl.decoder import GroupedExperts, MoE
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.models.vla.hf_keys import vlm_hf_state_dict

STEPS = 4
FLAVOR = "debug-moe"


def tiny_moe_vla() -> VLA:
    """The debug MoE VLA with a router that sends most rows to experts 0-3 (EP rank 0's): their router rows
    are scaled up 20x and the others down, so the all-to-all splits are far from even."""
    torch.manual_seed(0)
    vla = VLA.from_config(Model(flavor=FLAVOR), ActionExpert(action_horizon=4, max_action_dim=6, max_state_dim=5))
    with torch.no_grad():
        for moe in (m for m in vla.modules() if isinstance(m, MoE)):
            half = moe.num_experts // 2
            moe.router.weight[:half] *= 20.0
            moe.router.weight[half:] *= 0.05
    return vla


def ep_config(ep: int = 2, ac: str = "none"):
    cfg = job_config(ac=ac)
    cfg.model.flavor = FLAVOR
    cfg.parallelism.expert_parallel_degree = ep
    return cfg


def fsdp_config():
    cfg = job_config()
    cfg.model.flavor = FLAVOR
    return cfg


def routed_rows(model) -> list[int]:
    """Rows each EP rank's experts received over one forward of the global batch (summed over layers)."""
    loads = torch.zeros(2, dtype=torch.long)

    def count(_module, args):
        counts = torch.diff(args[1], prepend=args[1].new_zeros(1)).long()
        loads.add_(counts.view(2, -1).sum(1))

    handles = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, GroupedExperts)]
    with torch.no_grad():
        torch.manual_seed(0)
        model(make_batch(model, batch_size=GLOBAL_BATCH, seed=100))
    for handle in handles:
        handle.remove()
    return loads.tolist()


def grad_errors(want: dict, got: dict) -> dict[str, float]:
    """The largest relative gradient error of the experts, the router and the rest."""
    errors: dict[str, float] = {}
    for name, grad in want.items():
        if grad is not None:
            part = "experts" if ".experts." in name else "router" if ".router." in name else "rest"
            errors[part] = max(errors.get(part, 0.0), relative_error(got[name], grad))
    return errors


def check_parity(reference: VLA, ac: str) -> dict:
    """Losses over STEPS steps and the first step's gradients (largest relative error per part) of EP=2
    against one process."""
    ref_losses, _ = train(copy.deepcopy(reference), None, STEPS)
    model, dims = sharded_copy(reference, ep_config(ac=ac))
    losses, _ = train(model, dims, STEPS)

    batch = make_batch(reference, batch_size=GLOBAL_BATCH, seed=7)
    want_model = copy.deepcopy(reference)
    micro_step(want_model, [split(batch, r, 2) for r in range(2)], None, step=0)
    want = full_grads(want_model)
    model, dims = sharded_copy(reference, ep_config(ac=ac))
    micro_step(model, [split(batch, dims.dp_rank, dims.dp_world_size)], dims.dp_mesh, step=0)
    got = full_grads(model)
    return {"losses": losses, "reference": ref_losses, "grad_error": grad_errors(want, got),
            "routed_rows": routed_rows(reference)}


def check_tp_experts(reference: VLA) -> dict:
    """TP=2 on the MoE model: the TP ranks split the experts (each sends its half of the rows) instead of
    holding the same ones. Losses and first-step gradients against one process, and the experts' local rows."""
    cfg = ep_config(ep=1)
    cfg.parallelism.tensor_parallel_degree = 2
    ref_losses, _ = train(copy.deepcopy(reference), None, STEPS)
    model, dims = sharded_copy(reference, cfg)
    losses, _ = train_whole(model, dims, STEPS)
    want = step_grads(copy.deepcopy(reference), None)
    model, dims = sharded_copy(reference, cfg)
    got = step_grads(model, dims)
    local_rows = sorted({p.to_local().shape[0] for n, p in model.named_parameters() if ".experts." in n})
    return {"losses": losses, "reference": ref_losses, "grad_error": grad_errors(want, got),
            "expert_local_rows": local_rows}


def check_shards(reference: VLA) -> dict:
    """The expert weights' placements and this rank's measured parameter and optimizer-state elements."""
    model, dims = sharded_copy(reference, ep_config())
    experts = {n: p for n, p in model.named_parameters() if ".experts." in n}
    _, opt = train(model, dims, 1)
    local = sum(p.to_local().numel() for p in model.parameters())
    state = sum(v.to_local().numel() for s in opt.state.values() for v in s.values() if isinstance(v, DTensor))
    return {
        "expert_mesh_dims": sorted({tuple(p.device_mesh.mesh_dim_names) for p in experts.values()}),
        "expert_local_rows": sorted({p.to_local().shape[0] for p in experts.values()}),
        "num_experts": reference.vlm.args.text.num_experts,
        "local_params": local,
        "local_optimizer_state": state,
        "total_params": sum(p.numel() for p in model.parameters()),
    }


def check_dcp(reference: VLA) -> dict:
    return {"ep_to_fsdp": saved_and_reloaded_loss(reference, ep_config(), fsdp_config(), tiny_moe_vla),
            "fsdp_to_ep": saved_and_reloaded_loss(reference, fsdp_config(), ep_config(), tiny_moe_vla)}


def check_hf(reference: VLA) -> dict:
    """An EP=2 model reads the reference's VLM as an HF checkpoint (the released MoE layout; each rank its
    experts' rows only) and must give the reference's logits, and writes back the same tensors."""
    model = hf_loaded_copy(reference, ep_config())
    batch = make_batch(reference, batch_size=GLOBAL_BATCH, seed=11)
    written, rewritten = vlm_hf_state_dict(reference), vlm_hf_state_dict(model)
    return {
        "max_logit_diff": float((lm_head_logits(model, batch) - lm_head_logits(reference, batch)).abs().max()),
        "expert_keys": len([k for k in written if ".experts." in k]),
        "same_keys": sorted(rewritten) == sorted(written),
        "max_rewrite_diff": max(float((rewritten[k] - written[k]).abs().max()) for k in written),
    }


def checks() -> dict:
    reference = tiny_moe_vla()
    return {
        "parity": lambda: check_parity(reference, "none"),
        "parity_ac": lambda: check_parity(reference, "full"),
        "tp_experts": lambda: check_tp_experts(reference),
        "shards": lambda: check_shards(reference),
        "dcp": lambda: check_dcp(reference),
        "hf": lambda: check_hf(reference),
    }


if __name__ == "__main__":
    run_checks(checks)
