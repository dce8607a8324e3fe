"""Latency of ``VLA.sample_actions``: with and without the prefix KV cache, eager or compiled, and with
real-time chunking.

    python scripts/bench_infer.py                                   # debug flavor on CPU
    python scripts/bench_infer.py --flavor 2B --device cuda --dtype bfloat16 --cameras 1 3 \
        --modes cached compiled cudagraphs uncached

Randomly initialised weights (latency does not depend on their values). One observation per call
(batch 1): ``--cameras`` images of ``--image-size`` pixels, a ``--text-len`` token instruction, a chunk of
``--horizon`` actions, ``--steps`` Euler steps. Modes:

* ``cached``: the VLM prefix runs once into a KV cache, each Euler step runs only the expert tokens;
* ``uncached``: every layer over prefix and suffix at every step (the reference);
* ``compiled``: ``cached`` with the per-step expert pass under ``torch.compile``;
* ``cudagraphs``: ``compiled`` in mode ``reduce-overhead`` (CUDA graphs replay the per-step pass);
* ``rtc_guided``: ``cached`` with inference-time real-time chunking against a previous chunk with delay
  ``--rtc-delay`` (one vector-Jacobian product per Euler step);
* ``rtc_prefix``: ``cached`` with training-time RTC's prefix conditioning (no guidance);
* ``subtask``: pi0.5's hierarchy: first ``--subtask-tokens`` greedy tokens of a subtask (KV-cached, no stop
  token, so always that many), then ``cached`` sampling against the prompt + subtask cache;
* ``fast``: pi0-FAST: ``--fast-tokens`` greedy tokens constrained to the FAST ids (KV-cached, no stop token,
  so always that many: an untrained model's EOS would come at random), decoded into a chunk by a FAST
  tokenizer fitted on random smooth chunks. Compare with ``cached``, the flow sampling (which is also what a
  knowledge-insulated pi0.5 model serves with: its prompt has no FAST tokens).

Writes p50/p90 per (cameras, mode) as JSON, rewritten after every measurement so a run stopped by a
time cap keeps what it finished.
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
from torchtitan_vla.models.vla.fast_decoding import chunks_from_streams
from torchtitan_vla.models.vla.generate import greedy_decode
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.processing.fast_vocab import FastActions, FastVocab

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODES = ("cached", "uncached", "compiled", "cudagraphs", "rtc_guided", "rtc_prefix", "subtask", "fast")
COMPILE_MODES = {"compiled": "default", "cudagraphs": "reduce-overhead"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="debug", help="Qwen3-VL flavor (debug, 2B, 4B, ...)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--fusion", default="joint", choices=["joint", "late"])
    p.add_argument("--time-conditioning", default="mlp", choices=["mlp", "adarms"])
    p.add_argument("--cameras", type=int, nargs="+", default=[1], help="images per observation (one run each)")
    p.add_argument("--image-size", type=int, default=224, help="square image side in pixels (multiple of 32)")
    p.add_argument("--text-len", type=int, default=48, help="instruction tokens")
    p.add_argument("--horizon", type=int, default=50, help="action chunk length H")
    p.add_argument("--steps", type=int, default=10, help="Euler steps")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["cached", "uncached"])
    p.add_argument("--iters", type=int, default=20, help="timed calls per mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per mode (compilation happens here)")
    p.add_argument("--rtc-delay", type=int, default=4, help="inference delay d of the RTC modes")
    p.add_argument("--subtask-tokens", type=int, default=8, help="generated subtask tokens of mode 'subtask'")
    p.add_argument("--fast-tokens", type=int, default=30, help="generated FAST tokens of mode 'fast'")
    p.add_argument("--fast-vocab", type=int, default=1024, help="FAST vocabulary size of mode 'fast'")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--output", default="outputs/bench_infer.json", help="JSON result path")
    args = p.parse_args(argv)
    if args.image_size % 32:
        p.error(f"--image-size must be a multiple of 32, got {args.image_size}")
    return args


def random_vla(flavor: str, expert_cfg: ActionExpert, device: str, dtype: torch.dtype = torch.float32) -> VLA:
    """A randomly initialised VLA built on the meta device, in eval mode (latency does not depend on weights)."""
    with torch.device("meta"):
        vla = VLA.from_config(Model(flavor=flavor), expert_cfg)
    vla.to_empty(device=device)
    vla.init_weights(buffer_device=device)
    return vla.to(dtype).eval()


def build(args) -> VLA:
    expert_cfg = ActionExpert(fusion=args.fusion, time_conditioning=args.time_conditioning, action_horizon=args.horizon)
    return random_vla(args.flavor, expert_cfg, args.device, DTYPES[args.dtype])


def observation_batch(vla: VLA, batch_size: int, cameras: int, image_size: int, text_len: int, device: str,
                      pixel_dtype: torch.dtype = torch.float32) -> Batch:
    """``batch_size`` observations of ``cameras`` random images and a random ``text_len``-token instruction
    each: per camera ``<vision_start> <image_pad> x N <vision_end>``, then the instruction."""
    args, vision = vla.vlm.args, vla.vlm.args.vision
    side = image_size // vision.patch_size
    grid = torch.tensor([[1, side, side]] * (batch_size * cameras))
    image = [args.vision_start_token_id] + [args.image_token_id] * (side * side // vision.spatial_merge_size**2)
    input_ids = torch.tensor([(image + [args.vision_end_token_id]) * cameras + torch.randint(0, 1000, (text_len,)).tolist()
                              for _ in range(batch_size)])
    position_ids, _ = get_rope_index(input_ids, grid, image_token_id=args.image_token_id,
                                     spatial_merge_size=vision.spatial_merge_size)
    return Batch(input_ids=input_ids, labels=torch.full_like(input_ids, -100),
                 attention_mask=torch.ones_like(input_ids, dtype=torch.bool), position_ids=position_ids,
                 pixel_values=torch.randn(int(grid.prod(dim=1).sum()), vision.patch_dim, dtype=pixel_dtype),
                 image_grid_thw=grid, state=torch.randn(batch_size, vla.expert_cfg.max_state_dim)).to(device)


def sampler(vla: VLA, args, cameras: int):
    """(prefix tokens, a no-argument call of ``sample_actions`` on one observation with ``cameras`` images).

    The only place that calls the model."""
    batch = observation_batch(vla, 1, cameras, args.image_size, args.text_len, args.device, DTYPES[args.dtype])
    dev = args.device
    noise = torch.randn(1, args.horizon, vla.expert_cfg.max_action_dim, device=dev)
    previous = torch.randn(1, args.horizon, vla.expert_cfg.max_action_dim, device=dev)
    rtc = {"rtc_guided": RTCInputs.build(previous, args.rtc_delay, 0),
           "rtc_prefix": RTCInputs.build(previous, args.rtc_delay, 0, prefix_conditioning=True)}

    fast = fast_actions(vla, args) if "fast" in args.modes else None

    def call(mode: str) -> torch.Tensor:
        if mode == "fast":
            generated = greedy_decode(vla, batch, args.fast_tokens, allowed_token_ids=fast.vocab.token_ids)
            return chunks_from_streams(fast, generated.ids.tolist(), eos_id=-1).chunks
        if mode == "subtask":
            subtask = greedy_decode(vla, batch, args.subtask_tokens)
            return vla.sample_actions(batch, num_steps=args.steps, noise=noise, prefix=subtask.cache)
        with torch.no_grad():  # guidance turns gradients on for its own vector-Jacobian products
            return vla.sample_actions(batch, num_steps=args.steps, noise=noise, use_cache=mode != "uncached",
                                      rtc=rtc.get(mode))

    return batch.input_ids.shape[1], call


def fast_actions(vla: VLA, args) -> FastActions:
    """A FAST tokenizer of (horizon, 7-dof) chunks fitted on random walks, in the model's top rows."""
    chunks = torch.randn(512, args.horizon, 7).cumsum(dim=1).mul(0.1).numpy()
    tokenizer = FastTokenizer.fit(chunks, vocab_size=args.fast_vocab, scale=4.0)
    return FastActions(tokenizer, FastVocab(tokenizer.vocab_size, vla.vlm.args.text.vocab_size, set()))


def time_calls(call, mode: str, args) -> list[float]:
    timings = []
    for i in range(args.warmup + args.iters):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        call(mode)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= args.warmup:
            timings.append((time.perf_counter() - start) * 1000)
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vla = build(args)
    eager_velocity = vla.cached_velocity
    report = {"setup": {
        "flavor": args.flavor, "device": args.device, "dtype": args.dtype, "fusion": args.fusion,
        "time_conditioning": args.time_conditioning, "image_size": args.image_size, "text_len": args.text_len,
        "horizon": args.horizon, "steps": args.steps, "iters": args.iters, "warmup": args.warmup,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "hardware": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine(),
    }, "results": []}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for mode in args.modes:
        # The per-step expert pass is what runs `steps` times per chunk; the prefix runs once.
        vla.cached_velocity = (torch.compile(eager_velocity, mode=COMPILE_MODES[mode]) if mode in COMPILE_MODES
                               else eager_velocity)
        for cameras in args.cameras:
            prefix_tokens, call = sampler(vla, args, cameras)
            timings = time_calls(call, mode, args)
            report["results"].append({"cameras": cameras, "prefix_tokens": prefix_tokens, "mode": mode,
                                      "p50_ms": round(percentile(timings, 50), 3),
                                      "p90_ms": round(percentile(timings, 90), 3)})
            print(json.dumps(report["results"][-1]))
            out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
