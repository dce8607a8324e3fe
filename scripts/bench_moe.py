"""MoE layer step time (forward + backward) on CPU: the grouped layer vs the former per-expert loop, on one
layer of the same weights, alternating in one run. Prints the figures and writes JSON.

    PYTHONPATH=$PWD python scripts/bench_moe.py [--tokens 256] [--out bench_moe.json]

With ``--ep`` under ``torchrun --nproc_per_node=2`` (gloo): the same layer with expert parallelism (each rank
holds half the experts and exchanges rows by all-to-all) vs without (each rank holds all experts), each rank
on its own ``--tokens`` tokens, alternating in one run; plus the per-layer cost of the split-size exchange
(the counts' all-to-all and the one device->host copy).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time

import torch
import torch.distributed as dist
from torch.distributed._functional_collectives import all_to_all_single

from tests.models.qwen3_vl.test_moe import loop_reference
from torchtitan_vla.models.qwen3_vl.args import FLAVORS
from torchtitan_vla.models.qwen3_vl.decoder import MoE


def step_seconds(fn, x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x).square().mean().backward()
    return time.perf_counter() - start


def medians(runs: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, fn in runs.items():
            times[name].append(step_seconds(fn, x))
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def split_exchange_seconds(experts: int, repeats: int = 50) -> float:
    """One layer's split-size exchange under EP: the counts' all-to-all and their copy to the host."""
    counts = torch.randint(0, 8, (experts,), dtype=torch.int32)
    start = time.perf_counter()
    for _ in range(repeats):
        all_to_all_single(counts, None, None, group=dist.group.WORLD).wait().tolist()
    return (time.perf_counter() - start) / repeats


def expert_parallel(moe: MoE, x: torch.Tensor, repeats: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh

    from torchtitan_vla.parallel.expert_parallel import apply_ep
    from torchtitan_vla.utils.distributed import init_distributed

    init_distributed()
    sharded = copy.deepcopy(moe)
    apply_ep(sharded, init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("ep",)), None)
    torch.manual_seed(dist.get_rank())  # each rank routes its own tokens
    x = torch.randn_like(x, requires_grad=True)
    result = medians({"ep": sharded, "no_ep": moe}, x, repeats)
    result.update(ratio_ep_over_no_ep=result["ep"] / result["no_ep"], ranks=dist.get_world_size(),
                  split_exchange=split_exchange_seconds(moe.num_experts))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ep", action="store_true", help="expert parallelism vs none (under torchrun, 2 ranks)")
    parser.add_argument("--out", default="bench_moe.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    # 30B-A3B's routing (128 experts, top-8) at a quarter of its widths, so a 2-core CPU runs it.
    text = dataclasses.replace(FLAVORS["30B-A3B"].text, dim=512, moe_intermediate_size=192)
    moe = MoE(text)
    moe.init_weights()
    x = torch.randn(args.tokens, text.dim, requires_grad=True)
    if args.ep:
        result = expert_parallel(moe, x, args.repeats)
    else:
        result = medians({"grouped": moe, "loop": lambda t: loop_reference(moe, t)}, x, args.repeats)
        result.update(ratio_loop_over_grouped=result["loop"] / result["grouped"])
    result.update(tokens=args.tokens, experts=text.num_experts, top_k=text.num_experts_per_tok, dim=text.dim,
                  hidden=text.moe_intermediate_size, threads=torch.get_num_threads())
    if not args.ep or dist.get_rank() == 0:
        print(json.dumps(result, indent=1))
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.ep:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
