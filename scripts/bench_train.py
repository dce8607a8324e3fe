"""Training throughput of one flavor on synthetic batches of realistic shape, through the real trainer.

    python scripts/bench_train.py                                   # 2B + expert, robot batches
    python scripts/bench_train.py --flavor debug --steps 3          # CPU smoke run
    python scripts/bench_train.py --batch web --ac full --compile   # stage-1 web batches
    torchrun --nproc_per_node=8 scripts/bench_train.py --sweep      # AC modes x compile on/off
    python scripts/bench_train.py --ac none selective full          # several AC modes, one process
    python scripts/bench_train.py --output bench.json --append ...  # add the results to a JSON file

Robot batches: 1-3 camera images per sample at 224-448 px (square, multiple of 32), an instruction,
a state and a 50-step action chunk. Web batches: one 224-448 px image with a caption (text loss).
Samples are built once by the data pipeline's own prompt builder and collator (the debug tokenizer
stands in for Qwen's; only lengths matter here) and replayed, so data loading costs nothing.

Reported per configuration (steps after ``--warmup`` only): step time, samples/s, tokens/s (non-padding
decoder tokens), model TFLOP/s and MFU per device (method: ``torchtitan_vla/train/flops.py``, vs the bf16
dense peak of the GPU; n/a on CPU unless ``--peak-flops`` states a nominal one), and peak memory.
A configuration that fails (out of memory, a compile error) is reported with its error and the next one
runs; the JSON file is rewritten after every configuration, so a run stopped by a time cap keeps what
it finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from torchtitan_vla.config import load_config, resolve_stages
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.sample import Collator
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.train.spec import default_spec
from torchtitan_vla.train.trainer import Trainer
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import init_logging

AC_MODES = ("none", "full", "selective")
INSTRUCTION = "pick up the red block on the left and place it in the blue bowl next to the cup"


class ReplayDataset(IterableDataset):
    """A fixed pool of samples, cycled forever (state: the position in the pool)."""

    def __init__(self, samples):
        self.samples = samples
        self.position = 0

    def __iter__(self):
        while True:
            self.position += 1
            yield self.samples[(self.position - 1) % len(self.samples)]

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def build_samples(cfg, tokenizer, kind: str, count: int, seed: int, image_px: tuple[int, int]):
    rng = np.random.default_rng(seed)
    prompts = PromptBuilder(tokenizer, cfg.data)
    ex = cfg.action_expert
    samples = []
    for _ in range(count):
        side = int(rng.integers(image_px[0] // 32, image_px[1] // 32 + 1)) * 32
        if kind == "robot":
            cameras = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(int(rng.integers(1, 4)))]
            doc = prompts.robot(cameras, (side, side), INSTRUCTION)
            robot = {
                "state": rng.normal(size=ex.max_state_dim).astype(np.float32),
                "actions": rng.normal(size=(ex.action_horizon, ex.max_action_dim)).astype(np.float32),
                "action_is_pad": np.zeros(ex.action_horizon, bool),
                "action_dim_mask": np.ones(ex.max_action_dim, bool),
            }
        else:
            image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
            doc = prompts.caption(image, "a photo of " + " ".join(INSTRUCTION.split()[: int(rng.integers(4, 16))]))
            robot = {}
        samples.append(doc.to_sample(0, tokenizer.image_pad_id, **robot))
    return samples


def synthetic_spec(kind: str, seed: int, image_px: tuple[int, int]):
    spec = default_spec()

    def build_dataloader(cfg, tokenizer, dp_rank, dp_world_size, split):
        samples = build_samples(cfg, tokenizer, kind, 4 * cfg.training.local_batch_size, seed + dp_rank, image_px)
        ex = cfg.action_expert
        collate = Collator(tokenizer.pad_id, cfg.data.max_seq_len, ex.action_horizon, ex.max_action_dim,
                           ex.max_state_dim, 1, pad_to_max_seq_len=False)
        loader = StatefulDataLoader(ReplayDataset(samples), batch_size=cfg.training.local_batch_size,
                                    collate_fn=collate, num_workers=0)
        loader.source_names = [kind]
        loader.skipped_per_source = {kind: 0}  # synthetic samples are never corrupt
        return loader

    spec.build_dataloader = build_dataloader
    return spec


def bench_one(args, ac: str, compile_: bool, folder: Path) -> dict:
    name = f"{args.flavor}_{args.batch}_ac-{ac}_compile-{int(compile_)}_float8-{args.float8 or 'off'}"
    overrides = [
        ("job.name", name), ("job.dump_folder", str(folder)), ("model.flavor", args.flavor),
        ("model.tokenizer_path", str(folder / "tokenizer.json")),
        ("action_expert.action_horizon", str(args.horizon)), ("action_expert.max_action_dim", "32"),
        ("action_expert.max_state_dim", "32"), ("data.max_seq_len", str(args.max_seq_len)),
        ("training.steps", str(args.steps)), ("training.local_batch_size", str(args.local_batch_size)),
        ("training.gc_freq", "0"), ("activation_checkpoint.mode", ac), ("compile.enable", str(compile_).lower()),
        ("metrics.log_freq", "1"), ("metrics.enable_tensorboard", "false"), ("metrics.peak_flops", str(args.peak_flops)),
        ("checkpoint.enable", "false"), ("checkpoint.export_policy", "false"),
        ("lr_schedule.kind", "constant"),
    ]
    if args.float8:
        overrides += [("float8.enable", "true"), ("float8.recipe", args.float8)]
    if args.batch == "web":
        overrides += [("training.action_loss_weight", "0.0"), ("training.trainable", "vision,decoder")]
    loaded = load_config(None, overrides)
    trainer = Trainer(loaded, resolve_stages(loaded), synthetic_spec(args.batch, loaded.config.job.seed, tuple(args.image_px)))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.run()
    finally:
        trainer.close()
    records = [json.loads(line) for line in (folder / name / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > args.warmup] or records[-1:]
    mean = lambda key: float(np.mean([r[key] for r in timed]))  # noqa: E731
    mfu = [r["mfu_pct"] for r in timed if r["mfu_pct"] is not None]
    memory = {k: max(r[k] for r in records) for k in records[-1] if k.startswith("memory/")}
    return {
        "flavor": args.flavor, "batch": args.batch, "ac": ac, "compile": compile_, "float8": args.float8 or None,
        "world_size": dist_utils.world_size(), "local_batch_size": args.local_batch_size,
        "step_time_s": mean("time/step_s"),
        "samples_per_s": mean("throughput/samples_per_s"),
        "tokens_per_s": mean("throughput/tokens_per_s"),
        "tflops_per_device": mean("flops_per_s_per_device") / 1e12,
        "mfu_pct": float(np.mean(mfu)) if mfu else None,
        **memory,
        "timed_steps": len(timed),
    }


def bench_or_error(args, ac: str, compile_: bool, folder: Path) -> dict:
    """``bench_one``, or the configuration with its error when it fails, so a sweep goes on."""
    try:
        return bench_one(args, ac, compile_, folder)
    except Exception as exc:  # noqa: BLE001 - any failure of one configuration is a result of the sweep
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"flavor": args.flavor, "batch": args.batch, "ac": ac, "compile": compile_,
                "local_batch_size": args.local_batch_size, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", default="2B")
    parser.add_argument("--batch", choices=("robot", "web"), default="robot")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the averages (compile, caches)")
    parser.add_argument("--local-batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--image-px", type=int, nargs=2, default=(224, 448), metavar=("MIN", "MAX"),
                        help="square image sides drawn from [MIN, MAX] in steps of 32")
    parser.add_argument("--ac", choices=AC_MODES, nargs="+", default=["selective"], help="one run per mode")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="every AC mode x compile off/on")
    parser.add_argument("--float8", default="", help="float8.recipe to train with (torchao); empty: off")
    parser.add_argument("--peak-flops", type=float, default=0.0, help="MFU denominator per device; 0: GPU table")
    parser.add_argument("--output", default="", help="write the results to this JSON file")
    parser.add_argument("--append", action="store_true", help="add to the results already in --output")
    args = parser.parse_args(argv)
    if min(args.image_px) < 32 or args.image_px[0] > args.image_px[1]:
        parser.error(f"--image-px needs 32 <= MIN <= MAX, got {args.image_px}")
    if args.warmup >= args.steps:
        parser.error(f"--warmup ({args.warmup}) must be below --steps ({args.steps})")
    init_logging()
    runs = [(ac, c) for ac in AC_MODES for c in (False, True)] if args.sweep else [(ac, args.compile) for ac in args.ac]
    output = Path(args.output) if args.output else None
    # --append keeps whatever else the file holds too (gpu_check.sh records each run's outcome there).
    report = json.loads(output.read_text()) if args.append and output and output.is_file() else {}
    results = report.setdefault("results", [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if dist_utils.rank() == 0:
            build_debug_tokenizer(folder / "tokenizer.json")
        dist_utils.init_distributed()
        dist_utils.barrier()
        for ac, compile_ in runs:
            results.append(bench_or_error(args, ac, compile_, folder))
            if dist_utils.rank() == 0:
                print(json.dumps(results[-1]))
                if output:
                    output.write_text(json.dumps({**report, "device": _device_name()}, indent=1))
        dist_utils.barrier()
    this_run = results[-len(runs):]
    if dist_utils.rank() == 0:
        print(f"{'batch':>6} {'ac':>10} {'compile':>7} {'step s':>8} {'samples/s':>10} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU %':>6}")
        for r in this_run:
            if "error" in r:
                print(f"{r['batch']:>6} {r['ac']:>10} {r['compile']!s:>7} failed: {r['error']}")
                continue
            mfu = f"{r['mfu_pct']:.1f}" if r["mfu_pct"] is not None else "n/a"
            print(f"{r['batch']:>6} {r['ac']:>10} {r['compile']!s:>7} {r['step_time_s']:8.3f} {r['samples_per_s']:10.2f} "
                  f"{r['tokens_per_s']:10.0f} {r['tflops_per_device']:8.3f} {mfu:>6}")
    dist_utils.destroy_distributed()
    return 1 if any("error" in r for r in this_run) else 0


def _device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
