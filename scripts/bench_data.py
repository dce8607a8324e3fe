"""Robot data-loading throughput: the full training path vs decode only vs LeRobot's ``LeRobotDataset``.

    python scripts/bench_data.py [--workers 0 2] [--samples 160] [--rounds 2] [--out bench_data.json]
        [--lerobot-python /tmp/lerobot_venv/bin/python]

The dataset: generated LeRobot v3.0, 3 cameras at 224x224 (h264, GOP 2), H = 50 action chunks, random
frame order (the training order). Modes, alternated round by round in one run so machine load hits all
alike:

* ``full``: the training data loader: 3 frames decoded, resized/padded, patchified for Qwen3-VL, the
  prompt tokenized (debug tokenizer), MRoPE positions, normalized state/action chunk, batches of 8;
* ``decode``: the same loader's frame decode alone (``LeRobotReader.frames``) plus the state and chunk;
* ``lerobot``: LeRobot's ``LeRobotDataset`` with ``delta_timestamps`` for the chunk, through a torch
  DataLoader, run by ``--lerobot-python`` (a side venv with lerobot installed; skipped without it).

Reports samples/s and samples per CPU-second (CPU time of the process and its loader workers, read from
/proc: the figure that says how many cores a GPU host needs to feed its GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")
HORIZON, FPS, BATCH = 50, 30, 8


def child_pids() -> list[int]:
    """This process's live child processes (its loader workers)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.extend(int(pid) for pid in f.read().split())
    return pids


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live child processes (loader workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in child_pids():
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except FileNotFoundError:
            pass
    return total


def timed(batches, count: int, warmup: int) -> dict:
    """samples/s and samples per CPU-second over ``count`` batches of an iterator, after ``warmup``."""
    for _ in range(warmup):  # worker start-up and decoder opening are not throughput
        next(batches)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(count):
        next(batches)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"samples_per_s": count * BATCH / wall, "samples_per_cpu_s": count * BATCH / cpu}


def lerobot_loader(root: str, workers: int):
    """(video backend, batches of LeRobot's own dataset class in a random order); run by the side
    interpreter. torchcodec (LeRobot's default) when it loads, else LeRobot's ``pyav`` backend."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    backend = "torchcodec"
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (needs FFmpeg's shared libraries)
    except (ImportError, OSError, RuntimeError):
        backend = "pyav"
    ds = LeRobotDataset("local/bench", root=root, video_backend=backend,
                        delta_timestamps={"action": [i / FPS for i in range(HORIZON)]})
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))

    def batches():
        while True:
            yield from loader

    return backend, batches()


def project_loader(root: str, tokenizer, workers: int, mode: str):
    from torchtitan_vla.config import JobConfig
    from torchtitan_vla.config.data import DataSource
    from torchtitan_vla.data import build_dataloader
    from torchtitan_vla.data.loader import _robot_builder

    cfg = JobConfig()
    cfg.data.sources = [DataSource(name="robot", kind="lerobot", path=root)]
    cfg.data.image_size, cfg.data.max_seq_len, cfg.data.num_workers = 224, 512, workers
    cfg.action_expert.action_horizon, cfg.training.local_batch_size = HORIZON, BATCH
    if mode == "full":
        yield from build_dataloader(cfg, tokenizer, 0, 1)
        return
    import numpy as np
    import torch

    from torchtitan_vla.data.prompts import PromptBuilder

    builder = _robot_builder(cfg.data.sources[0], cfg, PromptBuilder(tokenizer, cfg.data))

    class Decode(torch.utils.data.IterableDataset):
        def __iter__(self):
            reader, rng = builder.reader, np.random.default_rng(0)
            while True:
                pos = int(rng.integers(len(reader.episodes)))
                frame = int(rng.integers(reader.episodes[pos].length))
                yield reader.frames(reader.episodes[pos], frame), builder.chunk(pos, frame)

    yield from torch.utils.data.DataLoader(Decode(), batch_size=BATCH, num_workers=workers,
                                           collate_fn=lambda samples: samples)


def side_main(args) -> None:
    """``--side MODE ROOT WORKERS BATCHES``: one measurement in a fresh process (a process that decoded
    video itself must not fork loader workers afterwards), JSON on stdout."""
    import torch

    torch.set_num_threads(1)  # in-process loading gets one core, like each worker (mixture.worker_init)
    mode, root, workers, count = args.side[0], args.side[1], int(args.side[2]), int(args.side[3])
    extra = {}
    if mode == "lerobot":
        extra["video_backend"], batches = lerobot_loader(root, workers)
    else:
        from torchtitan_vla.processing.tokenizer import Tokenizer

        batches = project_loader(root, Tokenizer.from_file(os.path.join(os.path.dirname(root), "tokenizer.json")),
                                 workers, mode)
    print(json.dumps({**timed(batches, count, warmup=max(2, 2 * workers)), **extra}))
    sys.stdout.flush()
    # Skip the loaders' shutdown, but end the workers first: an orphaned worker blocked on a full result
    # pipe lives on and holds this process's stdout open, so the parent's subprocess.run never returns.
    for pid in child_pids():
        os.kill(pid, signal.SIGKILL)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--samples", type=int, default=160, help="samples timed per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--frames", type=int, default=100, help="frames per episode")
    parser.add_argument("--lerobot-python", default="", help="interpreter of a venv with lerobot installed")
    parser.add_argument("--out", default="bench_data.json")
    parser.add_argument("--side", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side_main(args)
    from torchtitan_vla.data import write_lerobot_dataset
    from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
    from torchtitan_vla.tools.synthetic_data import synthetic_episodes

    work = tempfile.mkdtemp(prefix="bench_data_")
    build_debug_tokenizer(os.path.join(work, "tokenizer.json"))
    episodes = synthetic_episodes(args.episodes, args.frames, CAMERAS, size=224, state_dim=14, action_dim=14)
    root = write_lerobot_dataset(os.path.join(work, "ds"), episodes, fps=FPS, version="v3.0")
    count = max(1, args.samples // BATCH)
    modes = ["full", "decode"] + (["lerobot"] if args.lerobot_python else [])
    runs = []
    for round_ in range(args.rounds):
        for workers in args.workers:
            for mode in modes:
                python = args.lerobot_python if mode == "lerobot" else sys.executable
                out = subprocess.run([python, __file__, "--side", mode, root, str(workers), str(count)],
                                     capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                if out.returncode:
                    raise SystemExit(f"{mode} run failed: {out.stderr[-2000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append({"round": round_, "mode": mode, "workers": workers, **result})
                print(f"round {round_} workers={workers} {mode:8s}: {result['samples_per_s']:7.1f} samples/s, "
                      f"{result['samples_per_cpu_s']:7.1f} per CPU-second", flush=True)
    summary = {}
    for workers in args.workers:
        for mode in modes:
            rows = [r for r in runs if r["workers"] == workers and r["mode"] == mode]
            summary[f"{mode}_w{workers}"] = {k: sum(r[k] for r in rows) / len(rows) for k in ("samples_per_s", "samples_per_cpu_s")}
        if "lerobot" in modes:
            base = summary[f"lerobot_w{workers}"]["samples_per_cpu_s"]
            summary[f"full_over_lerobot_per_cpu_s_w{workers}"] = summary[f"full_w{workers}"]["samples_per_cpu_s"] / base
    report = {"benchmark": "LeRobot v3.0, 3 cameras 224x224 h264, H=50, batch 8, random order",
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "runs": runs, "summary": summary}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    sys.exit(main())
