"""Joins the process group that torchrun set up and proves every rank is there (all-reduce of ranks)."""

import os

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank)])
dist.all_reduce(total)
print(f"rank {rank}/{world} joined node {os.environ.get('GROUP_RANK')} rank-sum {int(total.item())}", flush=True)
dist.destroy_process_group()
