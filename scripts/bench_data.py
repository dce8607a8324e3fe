"""Robot data-loading throughput: samples/s from a generated LeRobot v3.0 dataset.

    python scripts/bench_data.py [--workers 0 2 4] [--samples 200] [--out bench_data.json]

The dataset: 3 cameras at 224x224 (h264, GOP 2 as LeRobot records), H = 50 action chunks, random frame
order (the training order). Every sample is fully built: 3 frames decoded, patchified for Qwen3-VL,
the prompt tokenized with the debug tokenizer, MRoPE positions, normalized state/action chunk, collated
into batches of 8. Reports samples/s and samples/s per busy core (workers, or 1 for in-process loading).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data import build_dataloader, write_lerobot_dataset
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.tools.synthetic_data import synthetic_episodes

CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")


def lerobot_status() -> str:
    try:
        import lerobot  # noqa: F401
    except ImportError:
        return ("not installed: lerobot 0.4.4 requires torch<2.11, torchvision<0.26 and torchcodec<0.11 (plus "
                "diffusers, accelerate, rerun-sdk, opencv, ...); this environment pins torch 2.13.0 (CPU), so it "
                "would need a separate venv with a second torch, whose PyPI Linux wheel is the CUDA build with "
                "GBs of nvidia-* dependencies")
    return "installed"


def measure(cfg: JobConfig, tokenizer, workers: int, samples: int) -> dict:
    cfg.data.num_workers = workers
    loader = build_dataloader(cfg, tokenizer, 0, 1)
    it = iter(loader)
    warmup = max(2, workers * cfg.data.prefetch_factor)
    for _ in range(warmup):  # worker start-up and decoder opening are not throughput
        next(it)
    batches = max(1, samples // cfg.training.local_batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    rate = batches * cfg.training.local_batch_size / seconds
    del it, loader
    cores = min(max(1, workers), os.cpu_count() or 1)  # workers beyond the cores share them
    return {"workers": workers, "cores_used": cores, "samples_per_s": rate, "samples_per_s_per_core": rate / cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--samples", type=int, default=200, help="samples timed per setting")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=120, help="frames per episode")
    parser.add_argument("--out", default="bench_data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # in-process loading gets one core, like each worker (mixture.worker_init)

    work = tempfile.mkdtemp(prefix="bench_data_")
    tokenizer = build_debug_tokenizer(os.path.join(work, "tokenizer.json"))
    t0 = time.perf_counter()
    episodes = synthetic_episodes(args.episodes, args.frames, CAMERAS, size=224, state_dim=14, action_dim=14)
    root = write_lerobot_dataset(os.path.join(work, "ds"), episodes, fps=30, version="v3.0")
    print(f"wrote {args.episodes} x {args.frames} frames x 3 cameras (224x224) in {time.perf_counter() - t0:.1f}s")

    cfg = JobConfig()
    cfg.data.sources = [DataSource(name="robot", kind="lerobot", path=root)]
    cfg.data.image_size = 224
    cfg.data.max_seq_len = 512
    cfg.action_expert.action_horizon = 50
    cfg.training.local_batch_size = 8
    results = []
    for workers in args.workers:
        r = measure(cfg, tokenizer, workers, args.samples)
        results.append(r)
        print(f"workers={workers}: {r['samples_per_s']:.1f} samples/s, {r['samples_per_s_per_core']:.1f} per core")
    per_core = max(r["samples_per_s_per_core"] for r in results)
    report = {
        "benchmark": "robot samples/s, LeRobot v3.0, 3 cameras 224x224, H=50, batch 8",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": results,
        "lerobot_baseline": lerobot_status(),
        "best_per_core": per_core,
        # A 16-core host feeding 8 GPUs: 8 trainer processes keep about one core each busy, the rest load.
        "projected_16_core_host_8_gpus": per_core * 8,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
