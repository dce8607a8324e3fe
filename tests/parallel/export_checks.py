"""The HF and policy exports of an FSDP2-sharded VLA, run under ``torchrun --nproc_per_node=2`` (gloo)
by test_weights_io.py, which compares them with the exports of the same model in one process.

Usage: ``export_checks.py OUT``; writes ``OUT/hf`` (``export_hf``) and ``OUT/policy`` (the policy
export's weights: the VLA's state dict under its own names)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from torchtitan_vla.config import JobConfig
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.parallel import ParallelDims, parallelize_vla
from torchtitan_vla.parallel.weights import TensorSource, init_on_device, load_weights
from torchtitan_vla.parallel.weights_writer import as_stored, write_weights
from torchtitan_vla.train.export import export_hf
from torchtitan_vla.utils.distributed import destroy_distributed, init_distributed

SHARD_BYTES = 2**17  # several shards for the tiny model


def lora_job() -> JobConfig:
    """The debug VLA with LoRA on the decoder's attention, so the export merges adapters."""
    cfg = JobConfig()
    cfg.model.lora_rank = 2
    cfg.model.lora_targets = ["wq", "wv"]
    cfg.model.lora_components = ["decoder"]
    cfg.action_expert.action_horizon = 4
    return cfg


def lora_vla() -> VLA:
    """Deterministic weights, with non-zero adapters (fresh ones are no-ops and would merge to W)."""
    torch.manual_seed(0)
    cfg = lora_job()
    vla = VLA.from_config(cfg.model, cfg.action_expert)
    with torch.no_grad():
        for name, p in vla.named_parameters():
            if ".lora_b." in name:
                p.normal_(std=0.1)
    return vla


def write_exports(model: VLA, cfg: JobConfig, out: Path) -> None:
    """What the trainer writes: ``export_hf`` and the policy export's weights (every rank calls it)."""
    export_hf(model, cfg, out / "hf", max_shard_bytes=SHARD_BYTES)
    state = model.state_dict()
    write_weights(out / "policy", state, as_stored(state), torch.float32, SHARD_BYTES)


def main() -> None:
    init_distributed()
    out = Path(sys.argv[1])
    cfg = lora_job()
    reference = lora_vla()
    dims = ParallelDims.from_config(cfg.parallelism)
    with torch.device("meta"):
        model = VLA.from_config(cfg.model, cfg.action_expert)
    parallelize_vla(model, dims, cfg)
    init_on_device(model, torch.device("cpu"))
    load_weights(model, TensorSource.of_dict(reference.state_dict(), "the reference VLA"))
    write_exports(model, cfg, out)
    destroy_distributed()


if __name__ == "__main__":
    main()
