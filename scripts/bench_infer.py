"""Latency of ``VLA.sample_actions`` with and without the prefix KV cache, and with real-time chunking.

    python scripts/bench_infer.py                                   # debug flavor on CPU
    python scripts/bench_infer.py --flavor 2B --device cuda --dtype bfloat16 --cameras 3

Randomly initialised weights (latency does not depend on their values). One observation per call
(batch 1): ``--cameras`` images of ``--image-size`` pixels, a ``--text-len`` token instruction, a chunk of
``--horizon`` actions, ``--steps`` Euler steps. Writes p50/p90 per mode and the cached speed-up as JSON.
The modes run interleaved (one call of each per iteration), so their ratios share the machine's state:
``cached``, ``uncached``, ``rtc_guided`` (cached, inference-time RTC against a previous chunk with delay
``--rtc-delay``: one vector-Jacobian product per Euler step) and ``rtc_prefix`` (cached, training-time RTC's
prefix conditioning: no guidance); ``rtc_overhead_p50`` = rtc_guided / cached.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from torchtitan_vla.config.model import ActionExpert, Model
from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.action_expert.rtc import RTCInputs
from torchtitan_vla.models.qwen3_vl.rope_index import get_rope_index
from torchtitan_vla.models.vla import VLA

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="debug", help="Qwen3-VL flavor (debug, 2B, 4B, ...)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--fusion", default="joint", choices=["joint", "late"])
    p.add_argument("--time-conditioning", default="mlp", choices=["mlp", "adarms"])
    p.add_argument("--cameras", type=int, default=1, help="images per observation")
    p.add_argument("--image-size", type=int, default=224, help="square image side in pixels (multiple of 32)")
    p.add_argument("--text-len", type=int, default=48, help="instruction tokens")
    p.add_argument("--horizon", type=int, default=50, help="action chunk length H")
    p.add_argument("--steps", type=int, default=10, help="Euler steps")
    p.add_argument("--iters", type=int, default=20, help="timed calls per mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per mode")
    p.add_argument("--rtc-delay", type=int, default=4, help="inference delay d of the RTC modes")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--output", default="outputs/bench_infer.json", help="JSON result path")
    return p.parse_args()


def build(args) -> VLA:
    expert_cfg = ActionExpert(fusion=args.fusion, time_conditioning=args.time_conditioning, action_horizon=args.horizon)
    with torch.device("meta"):
        vla = VLA.from_config(Model(flavor=args.flavor), expert_cfg)
    vla.to_empty(device=args.device)
    vla.init_weights(buffer_device=args.device)
    return vla.to(DTYPES[args.dtype]).eval()


def observation(vla: VLA, args) -> Batch:
    """One prompt: per camera ``<vision_start> <image_pad> x N <vision_end>``, then the instruction."""
    vision = vla.vlm.args.vision
    patches_per_side = args.image_size // vision.patch_size
    grid = torch.tensor([[1, patches_per_side, patches_per_side]] * args.cameras)
    per_image = patches_per_side**2 // vision.spatial_merge_size**2
    ids = []
    for _ in range(args.cameras):
        ids += [vla.vlm.args.vision_start_token_id] + [vla.vlm.args.image_token_id] * per_image
        ids += [vla.vlm.args.vision_end_token_id]
    ids += torch.randint(0, 1000, (args.text_len,)).tolist()
    input_ids = torch.tensor([ids])
    position_ids, _ = get_rope_index(input_ids, grid, image_token_id=vla.vlm.args.image_token_id,
                                     spatial_merge_size=vision.spatial_merge_size)
    dev = args.device
    return Batch(
        input_ids=input_ids.to(dev),
        labels=torch.full_like(input_ids, -100).to(dev),
        attention_mask=torch.ones_like(input_ids, dtype=torch.bool).to(dev),
        position_ids=position_ids.to(dev),
        pixel_values=torch.randn(int(grid.prod(dim=1).sum()), vision.patch_dim, device=dev, dtype=DTYPES[args.dtype]),
        image_grid_thw=grid.to(dev),
        state=torch.randn(1, vla.expert_cfg.max_state_dim, device=dev),
    )


def modes(vla: VLA, args) -> dict[str, dict]:
    """``sample_actions`` keyword arguments per mode; the RTC modes continue a random previous chunk."""
    prev = torch.randn(1, args.horizon, vla.expert_cfg.max_action_dim, device=args.device)
    rtc = dict(delay=args.rtc_delay, execution_horizon=0)
    return {
        "cached": {},
        "uncached": {"use_cache": False},
        "rtc_guided": {"rtc": RTCInputs.build(prev, **rtc)},
        "rtc_prefix": {"rtc": RTCInputs.build(prev, **rtc, prefix_conditioning=True)},
    }


def time_calls(vla: VLA, batch: Batch, args) -> dict[str, list[float]]:
    noise = torch.randn(1, args.horizon, vla.expert_cfg.max_action_dim, device=args.device)
    kwargs = modes(vla, args)
    timings = {name: [] for name in kwargs}
    for i in range(args.warmup + args.iters):
        for name, extra in kwargs.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            vla.sample_actions(batch, num_steps=args.steps, noise=noise, **extra)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= args.warmup:
                timings[name].append((time.perf_counter() - start) * 1000)
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vla = build(args)
    batch = observation(vla, args)
    result = {
        "flavor": args.flavor, "device": args.device, "dtype": args.dtype, "fusion": args.fusion,
        "time_conditioning": args.time_conditioning, "cameras": args.cameras, "image_size": args.image_size,
        "prefix_tokens": batch.input_ids.shape[1], "horizon": args.horizon, "steps": args.steps,
        "iters": args.iters, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "hardware": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine(),
    }
    for name, timings in time_calls(vla, batch, args).items():
        result[f"{name}_p50_ms"] = round(percentile(timings, 50), 3)
        result[f"{name}_p90_ms"] = round(percentile(timings, 90), 3)
    result["speedup_p50"] = round(result["uncached_p50_ms"] / result["cached_p50_ms"], 2)
    result["rtc_overhead_p50"] = round(result["rtc_guided_p50_ms"] / result["cached_p50_ms"], 2)
    result["rtc_prefix_overhead_p50"] = round(result["rtc_prefix_p50_ms"] / result["cached_p50_ms"], 2)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
