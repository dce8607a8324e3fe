"""The metrics window: what happened since the last log line (steps, time, data wait, samples, tokens,
FLOPs), turned into throughput and MFU when the line is written."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch.distributed.device_mesh import DeviceMesh

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.utils.distributed import all_reduce_sum

from .flops import FlopCounter


@dataclass
class MetricsWindow:
    steps: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0
    samples: float = 0.0
    tokens: float = 0.0
    flops: float = 0.0

    def add_step(self, host_batches: list[Batch], flops: FlopCounter, trainable: list[str], seconds: float,
                 data_seconds: float) -> None:
        """Count one optimizer step. Reads the host (CPU) copies: on the device it would sync every step."""
        self.steps += 1
        self.seconds += seconds
        self.data_seconds += data_seconds
        for batch in host_batches:
            self.samples += batch.num_samples
            self.tokens += float(batch.attention_mask.sum())
            self.flops += sum(flops.batch_flops(batch, trainable).values())

    def report(self, device: torch.device, dp_mesh: DeviceMesh | None, world_size: int,
               peak_flops: float | None) -> dict[str, float | None]:
        """Throughput of the window over all ranks (a collective), then the window starts over."""
        local = torch.tensor([self.samples, self.tokens, self.flops], dtype=torch.float64, device=device)
        samples, tokens, flops = (float(x) for x in all_reduce_sum(local, dp_mesh))
        elapsed = max(self.seconds, 1e-9)
        record = {
            "throughput/samples_per_s": samples / elapsed,
            "throughput/tokens_per_s": tokens / elapsed,
            "throughput/tokens_per_s_per_device": tokens / elapsed / world_size,
            "flops_per_s_per_device": flops / elapsed / world_size,
            "mfu_pct": 100 * flops / elapsed / world_size / peak_flops if peak_flops else None,
            "time/step_s": elapsed / max(1, self.steps),
            "time/data_wait_fraction": self.data_seconds / elapsed,
        }
        for f in fields(self):
            setattr(self, f.name, f.default)
        return record
