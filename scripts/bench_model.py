"""Forward+backward speed of the native Qwen3-VL against transformers' on the same weights and inputs.

CPU (default): a small-but-not-tiny config, both implementations in one run, prints the ratio.
GPU: ``--device cuda --dtype bfloat16 --flavor 2B`` reports tokens/s (add ``--no-hf`` to skip transformers).

    python scripts/bench_model.py --out bench_model.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from torchtitan_vla.models.qwen3_vl import FLAVORS, Qwen3VLArgs, Qwen3VLModel, TextArgs, VisionArgs
from torchtitan_vla.models.qwen3_vl.hf_checkpoint import load_hf_weights

# Big enough that matmuls dominate on CPU, small enough for a few seconds per implementation.
BENCH_ARGS = Qwen3VLArgs(
    text=TextArgs(vocab_size=4096, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, head_dim=32,
                  intermediate_size=768, mrope_section=(8, 4, 4)),
    vision=VisionArgs(depth=4, dim=128, n_heads=4, intermediate_size=512, num_position_embeddings=256,
                      deepstack_visual_indexes=(1, 2, 3)),
    image_token_id=4000, video_token_id=4001, vision_start_token_id=4002, vision_end_token_id=4003,
    bos_token_id=4004, eos_token_id=4005,
)


def make_batch(args: Qwen3VLArgs, batch: int, seq_len: int, grid: tuple[int, int, int], device):
    """``batch`` samples of ``seq_len`` tokens, each with one image of ``grid`` patches."""
    t, h, w = grid
    n_img = t * h * w // args.vision.spatial_merge_size**2
    text_len = seq_len - n_img - 2
    if text_len < 2:
        raise ValueError(f"seq_len {seq_len} is too short for an image of {n_img} tokens")
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(batch):
        words = torch.randint(0, 4000, (text_len,), generator=g).tolist()
        rows.append(words[:1] + [args.vision_start_token_id] + [args.image_token_id] * n_img
                    + [args.vision_end_token_id] + words[1:])
    ids = torch.tensor(rows, device=device)
    pixels = torch.randn(batch * t * h * w, args.vision.patch_dim, generator=g).to(device)
    grid_thw = torch.tensor([grid] * batch, device=device)
    return ids, pixels, grid_thw


def build_hf(args: Qwen3VLArgs, device, dtype):
    import transformers

    cfg = args.to_hf_config()
    cfg_cls = transformers.Qwen3VLMoeConfig if args.is_moe else transformers.Qwen3VLConfig
    model_cls = (transformers.Qwen3VLMoeForConditionalGeneration if args.is_moe
                 else transformers.Qwen3VLForConditionalGeneration)
    config = cfg_cls(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    with torch.device(device):
        return model_cls(config).to(dtype)


def time_steps(steps: dict, warmup: int, n: int, device) -> dict[str, list[float]]:
    """Seconds per step of each implementation, alternating them so machine-load drift hits both alike."""
    times = {name: [] for name in steps}
    for i in range(warmup + n):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", default="bench", help="'bench' (CPU-sized) or a FLAVORS key, e.g. 2B")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--image-grid", type=int, nargs=3, default=(1, 16, 16), metavar=("T", "H", "W"))
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: leave)")
    parser.add_argument("--no-hf", action="store_true", help="time only the native model")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    opts = parser.parse_args()

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    dtype = getattr(torch, opts.dtype)
    args = BENCH_ARGS if opts.flavor == "bench" else FLAVORS[opts.flavor]
    torch.manual_seed(0)
    ids, pixels, grid_thw = make_batch(args, opts.batch, opts.seq_len, tuple(opts.image_grid), device)
    labels = torch.roll(ids, -1, dims=1)

    models = {}
    hf = None
    if not opts.no_hf:
        hf = build_hf(args, device, dtype).train()
    with torch.device("meta"):
        ours = Qwen3VLModel(args)
    if hf is not None:
        ours.to_empty(device=device)
        ours.to(dtype)
        load_hf_weights(ours, hf.state_dict())
        ours.reset_buffers(device)
    else:
        ours.to_empty(device=device)
        ours.init_weights(buffer_device=device)
        ours.to(dtype)
    models["native"] = lambda: ours(ids, pixel_values=pixels.to(dtype), image_grid_thw=grid_thw)
    if hf is not None:
        mm_types = (ids == args.image_token_id).long()
        models["transformers"] = lambda: hf(input_ids=ids, pixel_values=pixels.to(dtype), image_grid_thw=grid_thw,
                                            mm_token_type_ids=mm_types).logits

    def step_of(forward, module):
        def step():
            logits = forward()
            F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten()).backward()
            module.zero_grad(set_to_none=True)
        return step

    results = {}
    steps = {name: step_of(forward, ours if name == "native" else hf) for name, forward in models.items()}
    for name, times in time_steps(steps, opts.warmup, opts.steps, device).items():
        median = statistics.median(times)
        results[name] = {"step_s": median, "tokens_per_s": ids.numel() / median, "all_step_s": times}
        print(f"{name:>13}: {median * 1e3:9.1f} ms / fwd+bwd step, {ids.numel() / median:10.0f} tokens/s")
    if "transformers" in results:
        ratio = results["transformers"]["step_s"] / results["native"]["step_s"]
        results["speedup_vs_transformers"] = ratio
        print(f"native is {ratio:.2f}x the speed of transformers")
        # Same weights, same inputs: the logits must agree (guards against timing a broken model).
        with torch.no_grad():
            diff = (models["native"]().float() - models["transformers"]().float()).abs().max().item()
        results["max_abs_logit_diff"] = diff
        print(f"max |logit difference|: {diff:.2e}")
    results["setup"] = {
        "flavor": opts.flavor, "device": str(device), "dtype": opts.dtype, "batch": opts.batch,
        "seq_len": opts.seq_len, "image_grid": list(opts.image_grid), "steps": opts.steps,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor(),
        "params_m": sum(p.numel() for p in ours.parameters()) / 1e6,
    }
    if opts.out:
        with open(opts.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
