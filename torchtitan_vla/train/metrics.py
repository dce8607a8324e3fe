"""Where metrics go: a rank-0 console line, metrics.jsonl, TensorBoard and wandb."""

from __future__ import annotations

import json
import math
import netrc
import os
import resource
from pathlib import Path
from typing import Any

import torch

from torchtitan_vla.config.metrics import Metrics as MetricsConfig
from torchtitan_vla.utils.logging import logger


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else ``online`` with an API key (env or ~/.netrc), ``offline`` without."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
        if netrc.netrc().authenticators(host):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    return "offline"


def peak_memory() -> dict[str, float]:
    """Peak device memory since the last reset (CUDA), or the process's peak RSS on CPU, in GiB."""
    if torch.cuda.is_available():
        return {
            "memory/max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "memory/max_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        }
    return {"memory/peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricsLogger:
    """Writes one record per log step to every enabled sink; a no-op on ranks other than 0."""

    def __init__(self, run_folder: Path, cfg: MetricsConfig, config_dict: dict, run_name: str, group: str, rank: int):
        self.enabled = rank == 0
        self.jsonl = None
        self.tb = None
        self.wandb_run = None
        if not self.enabled:
            return
        run_folder.mkdir(parents=True, exist_ok=True)
        if cfg.save_jsonl:
            self.jsonl = open(run_folder / "metrics.jsonl", "a")
        if cfg.enable_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_folder / "tb"))
        if cfg.enable_wandb:
            import wandb

            mode = wandb_mode()
            self.wandb_run = wandb.init(
                project=cfg.wandb_project,
                entity=cfg.wandb_entity or None,
                name=cfg.wandb_run_name or run_name,
                group=group,
                tags=cfg.wandb_tags,
                config=config_dict,
                dir=str(run_folder),
                mode=mode,
                resume="allow",
            )
            logger.info(f"wandb: {mode} run in {self.wandb_run.dir}")

    def log(self, step: int, record: dict[str, Any]) -> None:
        """``record``: flat dict; numbers go to every sink, strings (e.g. the stage) to jsonl only."""
        if not self.enabled:
            return
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.jsonl is not None:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
            self.jsonl.write(json.dumps({"step": step, **clean}) + "\n")
            self.jsonl.flush()
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(numbers, step=step)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def console_line(record: dict[str, Any], step: int, total_steps: int, stage: str, stage_step: int,
                 stage_steps: int, eta_s: float) -> str:
    """One human-readable line: progress, losses, grad norm, lr, throughput, MFU, memory, data wait."""
    parts = [f"step {step}/{total_steps}", f"[{stage} {stage_step}/{stage_steps}]", f"loss {record['loss']:.4f}"]
    terms = [f"{k.split('/')[-1]} {v:.4f}" for k, v in record.items() if k.startswith("loss/") and k.count("/") == 1]
    if terms:
        parts[-1] += f" ({', '.join(terms)})"
    parts.append(f"grad {record['grad_norm']:.3f}")
    lrs = [v for k, v in record.items() if k.startswith("lr/")]
    if lrs:
        parts.append(f"lr {max(lrs):.2e}")
    parts.append(f"{record['throughput/samples_per_s']:.1f} samples/s {record['throughput/tokens_per_s']:.0f} tok/s")
    mfu = record.get("mfu_pct")
    parts.append(f"mfu {mfu:.1f}%" if mfu is not None else "mfu n/a")
    mem = next((v for k, v in record.items() if k.startswith("memory/")), None)
    if mem is not None:
        parts.append(f"mem {mem:.2f} GiB")
    parts.append(f"data {100 * record['time/data_wait_fraction']:.0f}%")
    if record.get("nonfinite_skipped"):
        parts.append(f"skipped {record['nonfinite_skipped']}")
    data_skips = [f"{k.removeprefix('skipped/')} {v}" for k, v in record.items() if k.startswith("skipped/") and v]
    if data_skips:
        parts.append(f"data skipped {', '.join(data_skips)}")
    parts.append(f"eta {format_duration(eta_s)}")
    return " | ".join(parts)
