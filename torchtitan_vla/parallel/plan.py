"""Layout planner: what one rank holds for a configuration's layout, before anything is launched.

    python -m torchtitan_vla.parallel.plan --config X.toml [--world-size N] [--json]

builds the VLA on the meta device, applies the real ``parallelize_vla`` (TP, EP, AC, FSDP/HSDP) under a fake
process group of the requested world size, and reads each parameter's local shard: parameter,
gradient and AdamW-state bytes are therefore the shards the trainer would hold, not a formula. The
activation figure is an estimate (see ``activation_bytes``). A layout that cannot work is refused with
one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from torchtitan_vla.config import ConfigError, JobConfig, parse_command_line
from torchtitan_vla.config.loader import load_config
from torchtitan_vla.config.stages import resolve_stages
from torchtitan_vla.utils.distributed import local_tensor

from .expert_parallel import check_ep
from .fsdp import dtype_from_name
from .parallel_dims import ParallelDims
from .parallelize import parallelize_vla
from .tensor_parallel import check_tp_heads

OPTIMIZER_STATES = 2
"""AdamW keeps two float32 moments per trainable element."""


@dataclass
class RankPlan:
    rank: int
    params: int
    """Bytes of this rank's parameter shards (float32 master weights)."""
    grads: int
    """Bytes of its gradient shards (trainable parameters of the stage that trains the most)."""
    optimizer: int
    """Bytes of its optimizer state."""
    activations: int
    """Estimated bytes of activations kept for backward in one micro-batch."""
    local_params: int
    """Elements of its parameter shards."""

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations


def check_layout(cfg: JobConfig, world_size: int) -> ParallelDims:
    """The layout's degrees against the world size and the model's heads; ValueError names the culprit."""
    from torchtitan_vla.models.vla.build import vlm_args

    dims = ParallelDims.from_config(cfg.parallelism, world_size=world_size, device_type="cpu")
    args = vlm_args(cfg.model, None)
    check_tp_heads(args.text.n_heads, args.text.n_kv_heads, dims.tp, f"flavor {cfg.model.flavor!r}")
    check_tp_heads(args.vision.n_heads, args.vision.n_heads, dims.tp, f"flavor {cfg.model.flavor!r}'s vision encoder")
    check_ep(args.text.num_experts, dims.ep, dims.tp, f"flavor {cfg.model.flavor!r}")
    return dims


def activation_bytes(cfg: JobConfig, dims: ParallelDims, batch: int, seq: int) -> int:
    """Activations one micro-batch keeps for backward, per rank (an estimate, decoder and expert only).

    Per layer, with 16-bit activations and SDPA (no stored score matrix), a block keeps about
    ``s*b*h*(10 + 24/t)`` bytes without checkpointing (Korthikanti et al. 2022, no sequence
    parallelism); full AC keeps the block input (``2*s*b*h``) plus one block being recomputed;
    selective (``op``) keeps the matmul outputs, about half. The float32 logits of the LM head come on top.
    """
    from torchtitan_vla.models.vla.build import vlm_args

    text = vlm_args(cfg.model, None).text
    act_bytes = torch.finfo(dtype_from_name(cfg.training.mixed_precision_param)).bits // 8
    if dims.device_type == "cpu" and act_bytes != 4:
        act_bytes = 2  # planned for the accelerator the layout is meant for
    layer = seq * batch * text.dim * (10 + 24 / dims.tp) * act_bytes / 2
    mode = cfg.activation_checkpoint.mode
    if mode == "full":
        kept = text.n_layers * 2 * seq * batch * text.dim * act_bytes / 2 + layer
    elif mode == "selective":
        kept = text.n_layers * layer / 2
    else:
        kept = text.n_layers * layer
    logits = seq * batch * text.vocab_size * 4
    return int(kept + logits)


def plan_rank(cfg: JobConfig, trainable_sets: list[list[str]], world_size: int, rank: int,
              batch: int, seq: int) -> RankPlan:
    """Build and parallelize the model on meta as ``rank`` of a fake group of ``world_size``."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from torchtitan_vla.models.vla import VLA

    dims = check_layout(cfg, world_size)
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world_size)
    try:
        with torch.device("meta"):
            model = VLA.from_config(cfg.model, cfg.action_expert)
        parallelize_vla(model, dims, cfg)
        params = list(model.parameters())
        local = sum(local_tensor(p).numel() for p in params)
        trainable = 0
        for names in trainable_sets:
            model.set_trainable(names)
            trainable = max(trainable, sum(local_tensor(p).numel() for p in params if p.requires_grad))
        activations = activation_bytes(cfg, dims, batch, seq)
    finally:
        dist.destroy_process_group()
    return RankPlan(rank, params=4 * local, grads=4 * trainable, optimizer=4 * OPTIMIZER_STATES * trainable,
                    activations=activations, local_params=local)


def plan(config_path: str | None, overrides, world_size: int | None) -> tuple[JobConfig, int, list[RankPlan]]:
    loaded = load_config(config_path, overrides)
    cfg = loaded.config
    stages = resolve_stages(loaded)
    p = cfg.parallelism
    if world_size is None:
        if p.data_parallel_shard_degree == -1:
            raise ValueError("--world-size is needed: parallelism.data_parallel_shard_degree is -1 (derived)")
        world_size = p.data_parallel_replicate_degree * p.data_parallel_shard_degree * p.tensor_parallel_degree
    batch = max(s.config.training.local_batch_size for s in stages)
    seq = max(s.config.data.max_seq_len for s in stages)
    trainable_sets = [list(s.config.training.trainable) for s in stages] or [list(cfg.training.trainable)]
    ranks = sorted({0, world_size - 1})
    return cfg, world_size, [plan_rank(cfg, trainable_sets, world_size, r, batch, seq) for r in ranks]


def gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def render(cfg: JobConfig, world_size: int, plans: list[RankPlan]) -> str:
    dims = ParallelDims.from_config(cfg.parallelism, world_size=world_size, device_type="cpu")
    lines = [
        f"# flavor {cfg.model.flavor}, world {world_size} = dp_replicate {dims.dp_replicate} x dp_shard "
        f"{dims.dp_shard} x tp {dims.tp}{f' (ep {dims.ep} within dp_shard)' if dims.ep_enabled else ''}; "
        f"AC {cfg.activation_checkpoint.mode}",
        "# rank | params GiB | grads GiB | optimizer GiB | activations GiB (est.) | total GiB",
    ]
    for r in plans:
        lines.append(f"# {r.rank:>4} | {gib(r.params):>9} | {gib(r.grads):>9} | {gib(r.optimizer):>13} | "
                     f"{gib(r.activations):>22} | {gib(r.total):>9}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.parallel.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--world-size", type=int, default=None, help="ranks to plan for (default: the config's degrees)")
    parser.add_argument("--json", action="store_true", help="print the per-rank figures as JSON")
    args, rest = parser.parse_known_args(argv)
    try:
        cli = parse_command_line(rest)
        cfg, world_size, plans = plan(cli.config_path, cli.overrides, args.world_size)
    except (ConfigError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"world_size": world_size, "ranks": [asdict(p) for p in plans]}))
    else:
        print(render(cfg, world_size, plans))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
