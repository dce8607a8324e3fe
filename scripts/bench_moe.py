"""MoE layer step time (forward + backward) on CPU: the grouped layer vs the former per-expert loop, on one
layer of the same weights, alternating in one run. Prints the figures and writes JSON.

    PYTHONPATH=$PWD python scripts/bench_moe.py [--tokens 256] [--out bench_moe.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from tests.models.qwen3_vl.test_moe import loop_reference
from torchtitan_vla.models.qwen3_vl.args import FLAVORS
from torchtitan_vla.models.qwen3_vl.decoder import MoE


def step_seconds(fn, x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x).square().mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench_moe.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    # 30B-A3B's routing (128 experts, top-8) at a quarter of its widths, so a 2-core CPU runs it.
    text = dataclasses.replace(FLAVORS["30B-A3B"].text, dim=512, moe_intermediate_size=192)
    moe = MoE(text)
    moe.init_weights()
    x = torch.randn(args.tokens, text.dim, requires_grad=True)
    runs = {"grouped": moe, "loop": lambda t: loop_reference(moe, t)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, fn in runs.items():
            times[name].append(step_seconds(fn, x))
    result = {name: statistics.median(t[1:]) for name, t in times.items()}
    result.update(ratio_loop_over_grouped=result["loop"] / result["grouped"], tokens=args.tokens,
                  experts=text.num_experts, top_k=text.num_experts_per_tok, dim=text.dim,
                  hidden=text.moe_intermediate_size, threads=torch.get_num_threads())
    print(json.dumps(result, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
