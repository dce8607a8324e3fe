"""Real-time chunking in bfloat16: inference-time guidance and training-time prefix conditioning of a
bf16 model against the same weights in float32, with the prefix KV cache, joint and late fusion, batched.

    python scripts/check_rtc_bf16.py                                       # debug flavor on CPU
    python scripts/check_rtc_bf16.py --flavor 2B --device cuda --output OUT/rtc_bf16.json

Randomly initialised weights; every fusion gets a batch of ``--batch`` observations with different delays
d (``--delays``, cycled) and one execution horizon s. Per fusion and RTC mode (guided / prefix) it records:
finite output, the frozen rows ``[0, d)`` equal to the previous chunk bit for bit, the largest bf16 - fp32
difference relative to the standard deviation of what the fp32 flow moved (chunk - noise; ``rel_max_diff``), for guidance the mask-weighted
distance of the overlap to the previous chunk with and without guidance (``guided_over_free``: below 1
when guidance pulls), and the p50 latency of plain, guided and prefix sampling in bf16, interleaved.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import observation_batch, random_vla  # noqa: E402

from torchtitan_vla.config.model import ActionExpert  # noqa: E402
from torchtitan_vla.data.batch import Batch  # noqa: E402
from torchtitan_vla.models.action_expert.rtc import RTCInputs  # noqa: E402
from torchtitan_vla.models.vla import VLA  # noqa: E402

MODES = ("guided", "prefix")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="debug")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fusions", nargs="+", default=["joint", "late"], choices=["joint", "late"])
    p.add_argument("--batch", type=int, default=2, help="observations per call")
    p.add_argument("--image-size", type=int, default=64, help="square image side in pixels (multiple of 32)")
    p.add_argument("--text-len", type=int, default=16)
    p.add_argument("--horizon", type=int, default=16, help="action chunk length H")
    p.add_argument("--steps", type=int, default=5, help="Euler steps")
    p.add_argument("--delays", type=int, nargs="+", default=[2, 4], help="d per observation (cycled)")
    p.add_argument("--execution-horizon", type=int, default=4, help="s: the guided overlap ends at H - s")
    p.add_argument("--iters", type=int, default=3, help="timed calls per mode (interleaved)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--output", default="outputs/rtc_bf16.json")
    return p.parse_args(argv)


def compare(vla: VLA, low: VLA, batch: Batch, prev: torch.Tensor, delays: torch.Tensor, execution_horizon: int,
            num_steps: int) -> dict:
    """RTC of ``vla`` (float32) and of ``low`` (its bfloat16 copy) on ``batch`` from the same noise against
    the previous chunk ``prev``. -> {mode: figures} (see the module docstring)."""
    horizon, dims = vla.expert_cfg.action_horizon, vla.expert_cfg.max_action_dim
    noise = torch.randn(batch.num_samples, horizon, dims, device=batch.input_ids.device)
    report = {}
    for mode in MODES:
        rtc = RTCInputs.build(prev, delays, execution_horizon, prefix_conditioning=mode == "prefix")
        reference = vla.sample_actions(batch, num_steps=num_steps, noise=noise, rtc=rtc)
        chunk = low.sample_actions(batch, num_steps=num_steps, noise=noise, rtc=rtc)
        _, frozen, weights = rtc.padded(horizon, dims)
        figures = {
            "finite": bool(torch.isfinite(chunk).all()),
            "frozen_exact": bool(torch.equal(chunk[frozen], prev[frozen])),
            "rel_max_diff": float((chunk - reference).abs().max() / (reference - noise).std()),
        }
        if mode == "guided":
            free = low.sample_actions(batch, num_steps=num_steps, noise=noise)
            overlap = (weights * ~frozen)[:, :, None]
            figures["guided_over_free"] = float(((chunk - prev) * overlap).norm() / ((free - prev) * overlap).norm())
        report[mode] = figures
    return report


def latency(vla: VLA, batch: Batch, prev: torch.Tensor, delays: torch.Tensor, execution_horizon: int,
            num_steps: int, iters: int) -> dict:
    """p50 milliseconds of plain, guided and prefix sampling, one call of each per round."""
    calls = {"plain": None, "guided": RTCInputs.build(prev, delays, execution_horizon),
             "prefix": RTCInputs.build(prev, delays, execution_horizon, prefix_conditioning=True)}
    ms: dict[str, list[float]] = {mode: [] for mode in calls}
    cuda = batch.input_ids.is_cuda
    for round_ in range(iters + 1):  # round 0 warms up
        for mode, rtc in calls.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            vla.sample_actions(batch, num_steps=num_steps, rtc=rtc)
            if cuda:
                torch.cuda.synchronize()
            if round_:
                ms[mode].append((time.perf_counter() - start) * 1000)
    return {mode: round(statistics.median(values), 2) for mode, values in ms.items() if values}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    delays = torch.tensor([args.delays[i % len(args.delays)] for i in range(args.batch)], device=args.device)
    result = {"setup": {k: getattr(args, k) for k in ("flavor", "device", "batch", "image_size", "horizon", "steps",
                                                     "delays", "execution_horizon", "iters")}, "fusions": {}}
    for fusion in args.fusions:
        vla = random_vla(args.flavor, ActionExpert(fusion=fusion, action_horizon=args.horizon), args.device)
        low = copy.deepcopy(vla).to(torch.bfloat16)
        batch = observation_batch(vla, args.batch, 1, args.image_size, args.text_len, args.device)
        with torch.no_grad():  # guidance turns gradients on for its own vector-Jacobian products
            prev = vla.sample_actions(batch, num_steps=args.steps)  # the policy's own earlier chunk
            report = compare(vla, low, batch, prev, delays, args.execution_horizon, args.steps)
            report["latency_ms_p50"] = latency(low, batch, prev, delays, args.execution_horizon, args.steps, args.iters)
        result["fusions"][fusion] = report
        print(json.dumps({fusion: report}), flush=True)
        del vla, low
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
