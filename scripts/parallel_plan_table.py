"""The layout planner's per-rank memory for every released size at 8, 64 and 256 GPUs, as a markdown
table (docs/parallelism.md) and JSON. Each row is ``torchtitan_vla.parallel.plan`` on the size's config.

    python scripts/parallel_plan_table.py [--out plan_table.json]
"""

from __future__ import annotations

import argparse
import json

from torchtitan_vla.parallel.plan import gib, plan

CONFIGS = {
    "2B": ("train_configs/qwen3vl_2b/curriculum.toml", lambda n: []),
    "8B": ("train_configs/qwen3vl_8b/curriculum.toml", lambda n: []),
    "32B": ("train_configs/qwen3vl_32b/curriculum.toml", lambda n: []),
    "30B-A3B": ("train_configs/qwen3vl_30b_a3b/curriculum.toml", lambda n: []),
    # One replica per 128 GPUs (HSDP across groups of 16 nodes), EP 2 x TP 4 inside each node.
    "235B-A22B": ("train_configs/qwen3vl_235b_a22b/curriculum.toml",
                  lambda n: [("parallelism.data_parallel_replicate_degree", str(max(1, n // 128))),
                             ("parallelism.data_parallel_shard_degree", "-1")]),
}
WORLD_SIZES = (8, 64, 256)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="plan_table.json")
    args = parser.parse_args()
    rows = []
    print("| size | GPUs | layout (replicate x shard x tp, ep within shard) | AC | params GiB | grads GiB | optimizer GiB | "
          "activations GiB (est.) | total GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, (path, overrides) in CONFIGS.items():
        for n in WORLD_SIZES:
            cfg, world, ranks = plan(path, overrides(n), n)
            r = max(ranks, key=lambda x: x.total)
            p = cfg.parallelism
            tp = p.tensor_parallel_degree
            layout = f"{p.data_parallel_replicate_degree} x {n // (p.data_parallel_replicate_degree * tp)} x {tp}"
            if p.expert_parallel_degree > 1:
                layout += f" (ep {p.expert_parallel_degree})"
            print(f"| {size} | {n} | {layout} | {cfg.activation_checkpoint.mode} | {gib(r.params)} | {gib(r.grads)} | "
                  f"{gib(r.optimizer)} | {gib(r.activations)} | {gib(r.total)} |", flush=True)
            rows.append({"size": size, "world_size": n, "layout": layout, "rank": r.rank, "params": r.params,
                         "grads": r.grads, "optimizer": r.optimizer, "activations": r.activations})
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
