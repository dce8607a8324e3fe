"""The grouped MoE layer against a per-expert loop (outputs and gradients, uneven routing) and its
load-balancing loss against transformers' Qwen3-VL-MoE implementation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import load_balancing_loss_func

from torchtitan_vla.models.qwen3_vl.args import FLAVORS
from torchtitan_vla.models.qwen3_vl.decoder import MoE, load_balancing_loss, load_balancing_loss_of


def tiny_moe(seed: int = 0) -> MoE:
    torch.manual_seed(seed)
    args = dataclasses.replace(FLAVORS["debug"].text, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=24)
    moe = MoE(args)
    moe.init_weights(std=0.1)
    return moe


def loop_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Each expert on the tokens routed to it, one at a time (the layer's former implementation)."""
    flat = x.reshape(-1, x.shape[-1])
    _, weights, experts = moe.route(flat)
    out = torch.zeros_like(flat)
    w = moe.experts
    for e in range(moe.num_experts):
        token, slot = torch.where(experts == e)
        h = F.silu(flat[token] @ w.w1[e].T) * (flat[token] @ w.w3[e].T)
        out.index_add_(0, token, (h @ w.w2[e].T) * weights[token, slot, None])
    return out.view(x.shape)


def test_grouped_experts_match_the_per_expert_loop_with_uneven_routing():
    moe = tiny_moe()
    with torch.no_grad():  # skew the router through feature 0: experts 0 and 1 win, 6 and 7 never do
        moe.router.weight[:, 0] = torch.tensor([5.0, 3.0, 0, 0, 0, 0, -9.0, -9.0])
    x = torch.randn(3, 11, 64)
    x[..., 0] = 2.0
    x.requires_grad_(True)
    _, _, chosen = moe.route(x.detach().reshape(-1, 64))
    counts = torch.bincount(chosen.flatten(), minlength=8)
    assert (counts == 0).any() and counts.max() > 2 * counts.float().mean()
    target = torch.randn(3, 11, 64)
    outputs, grads = [], []
    for run in (moe, lambda t: loop_reference(moe, t)):
        moe.zero_grad()
        x.grad = None
        y = run(x)
        (y * target).sum().backward()
        outputs.append(y.detach())
        grads.append([x.grad.clone()] + [p.grad.clone() for p in moe.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [1, 3])
def test_load_balancing_loss_is_qwen3_moe_s(layers):
    torch.manual_seed(1)
    logits = [torch.randn(40, 8) for _ in range(layers)]
    want = load_balancing_loss_func(tuple(logits), num_experts=8, top_k=2)
    # transformers concatenates the layers' tokens; the loss of the concatenation is what we compare.
    got = load_balancing_loss(torch.cat(logits), top_k=2)
    torch.testing.assert_close(got, want)


def test_summed_routing_stats_give_transformers_loss_of_all_tokens():
    """What the trainer logs: each MoE forward's stats (layers x micro-batches x ranks) summed, then the loss,
    equals transformers' loss over every layer's router logits of the global batch at once."""
    moe = tiny_moe()
    chunks = [torch.randn(2, 5, 64) for _ in range(3)]  # e.g. micro-batches or ranks
    logits, stats = [], 0
    for x in chunks:
        with torch.no_grad():
            moe(x)
            logits.append(moe.router(x.reshape(-1, 64)))
        stats = stats + moe.routing_stats
    want = load_balancing_loss_func(tuple(logits), num_experts=8, top_k=2)
    torch.testing.assert_close(load_balancing_loss_of(stats, top_k=2), want)
