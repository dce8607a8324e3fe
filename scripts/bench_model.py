"""Speed of the native Qwen3-VL against transformers' on the same weights and inputs, and their agreement.

Both implementations run in one process and alternate call by call (machine-load drift hits both alike).
They share one set of weight tensors, so a 2B model costs one copy of its weights, not two.

    python scripts/bench_model.py --out bench_model.json                        # CPU-sized config
    python scripts/bench_model.py --flavor 2B --dtype bfloat16 --text-only --batch 1 --seq-len 32
    python scripts/bench_model.py --flavor 2B --device cuda --dtype bfloat16 --modes forward --attention-backend flex

Modes: ``forward`` (no grad: logits) and ``train`` (forward + backward of a cross-entropy loss). Reported:
median and minimum seconds per call of each implementation, transformers / native ratio of the medians
(above 1: native is faster), max |logit difference| and the share of positions whose argmax token agrees.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from torchtitan_vla.models.qwen3_vl import FLAVORS, Qwen3VLArgs, Qwen3VLModel, TextArgs, VisionArgs
from torchtitan_vla.models.qwen3_vl.state_dict_adapter import Qwen3VLStateDictAdapter

# Big enough that matmuls dominate on CPU, small enough for a few seconds per implementation.
BENCH_ARGS = Qwen3VLArgs(
    text=TextArgs(vocab_size=4096, dim=256, n_layers=4, n_heads=8, n_kv_heads=4, head_dim=32,
                  intermediate_size=768, mrope_section=(8, 4, 4)),
    vision=VisionArgs(depth=4, dim=128, n_heads=4, intermediate_size=512, num_position_embeddings=256,
                      deepstack_visual_indexes=(1, 2, 3)),
    image_token_id=4000, video_token_id=4001, vision_start_token_id=4002, vision_end_token_id=4003,
    bos_token_id=4004, eos_token_id=4005,
)
MODES = ("forward", "train")


def make_inputs(args: Qwen3VLArgs, batch: int, seq_len: int, grid: tuple[int, int, int] | None, device):
    """``batch`` rows of ``seq_len`` tokens, each with one image of ``grid`` patches (``None``: text only)."""
    g = torch.Generator().manual_seed(0)
    n_img = grid[0] * grid[1] * grid[2] // args.vision.spatial_merge_size**2 if grid else 0
    text_len = seq_len - (n_img + 2 if grid else 0)
    if text_len < 2:
        raise ValueError(f"--seq-len {seq_len} is too short for an image of {n_img} tokens")
    # Ordinary words: below every special token id (and the vocabulary size).
    word_ids = min(args.text.vocab_size, args.image_token_id, args.video_token_id, args.vision_start_token_id,
                   args.vision_end_token_id, args.bos_token_id, args.eos_token_id)
    rows = []
    for _ in range(batch):
        words = torch.randint(0, word_ids, (text_len,), generator=g).tolist()
        image = [args.vision_start_token_id] + [args.image_token_id] * n_img + [args.vision_end_token_id] if grid else []
        rows.append(words[:1] + image + words[1:])
    inputs = {"input_ids": torch.tensor(rows, device=device)}
    if grid:
        inputs["pixel_values"] = torch.randn(batch * grid[0] * grid[1] * grid[2], args.vision.patch_dim, generator=g)
        inputs["image_grid_thw"] = torch.tensor([grid] * batch, device=device)
    return inputs


def build_hf(args: Qwen3VLArgs, device, dtype):
    import transformers

    cfg = args.to_hf_config()
    cfg_cls = transformers.Qwen3VLMoeConfig if args.is_moe else transformers.Qwen3VLConfig
    model_cls = (transformers.Qwen3VLMoeForConditionalGeneration if args.is_moe
                 else transformers.Qwen3VLForConditionalGeneration)
    config = cfg_cls(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    # Built directly in the target dtype: a 2B model in fp32 first and then cast would hold both copies.
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return model_cls(config).to(dtype)
    finally:
        torch.set_default_dtype(default)


def build_native_sharing(args: Qwen3VLArgs, hf, device, attention_backend: str) -> Qwen3VLModel:
    """The native model adopting ``hf``'s weight tensors (no copy: the adapter only renames and reshapes)."""
    with torch.device("meta"):
        ours = Qwen3VLModel(args, attention_backend=attention_backend)
    # Adopting the tensors (assign) is what lets two 2B fp32 models with gradients fit in 24 GiB.
    ours.load_state_dict(Qwen3VLStateDictAdapter(args).from_hf(dict(hf.state_dict())), strict=not args.text.tie_word_embeddings,
                         assign=True)
    ours.tie_weights()
    ours.reset_buffers(device)
    return ours


def build_native_alone(args: Qwen3VLArgs, device, dtype, attention_backend: str) -> Qwen3VLModel:
    with torch.device("meta"):
        ours = Qwen3VLModel(args, attention_backend=attention_backend)
    ours.to_empty(device=device)
    ours.init_weights(buffer_device=device)
    return ours.to(dtype)


def calls_of(models: dict, inputs: dict, args: Qwen3VLArgs, dtype, mode: str) -> dict:
    """One no-argument callable per implementation running ``mode`` on the same inputs."""
    pixels = inputs.get("pixel_values")
    pixels = pixels.to(device=inputs["input_ids"].device, dtype=dtype) if pixels is not None else None
    ids = inputs["input_ids"]
    grid = inputs.get("image_grid_thw")
    labels = torch.roll(ids, -1, dims=1)
    forwards = {"native": lambda: models["native"](ids, pixel_values=pixels, image_grid_thw=grid)}
    if "transformers" in models:
        extra = {"pixel_values": pixels, "image_grid_thw": grid} if pixels is not None else {}
        mm_types = (ids == args.image_token_id).long()
        forwards["transformers"] = lambda: models["transformers"](input_ids=ids, mm_token_type_ids=mm_types,
                                                                  **extra).logits

    def call_of(name):
        forward, module = forwards[name], models[name]
        if mode == "forward":
            def call():
                with torch.no_grad():
                    return forward()
        else:
            def call():
                logits = forward()
                F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten()).backward()
                module.zero_grad(set_to_none=True)
        return call

    return {name: call_of(name) for name in forwards}


def time_calls(calls: dict, warmup: int, n: int, device) -> dict[str, list[float]]:
    """Seconds per call of each implementation, alternating them call by call."""
    times = {name: [] for name in calls}
    for i in range(warmup + n):
        for name, call in calls.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def agreement(calls: dict) -> dict:
    """Max |logit difference| and argmax agreement of the two implementations' forward calls."""
    ours, theirs = calls["native"]().float(), calls["transformers"]().float()
    return {
        "max_abs_logit_diff": (ours - theirs).abs().max().item(),
        "argmax_agreement": (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item(),
        "max_abs_logit": theirs.abs().max().item(),
    }


def hardware(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavor", default="bench", help="'bench' (CPU-sized) or a FLAVORS key, e.g. 2B")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--attention-backend", default="sdpa", choices=["sdpa", "flex"], help="native model's")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--image-grid", type=int, nargs=3, default=(1, 16, 16), metavar=("T", "H", "W"))
    parser.add_argument("--text-only", action="store_true", help="no image in the prompt")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed calls per implementation and mode")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: leave)")
    parser.add_argument("--no-hf", action="store_true", help="time only the native model")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    opts = parser.parse_args(argv)

    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    dtype = getattr(torch, opts.dtype)
    if opts.flavor != "bench" and opts.flavor not in FLAVORS:
        parser.error(f"unknown --flavor {opts.flavor!r}; choose 'bench' or one of {sorted(FLAVORS)}")
    args = BENCH_ARGS if opts.flavor == "bench" else FLAVORS[opts.flavor]
    torch.manual_seed(0)
    inputs = make_inputs(args, opts.batch, opts.seq_len, None if opts.text_only else tuple(opts.image_grid), device)

    if opts.no_hf:
        models = {"native": build_native_alone(args, device, dtype, opts.attention_backend)}
    else:
        hf = build_hf(args, device, dtype)
        models = {"native": build_native_sharing(args, hf, device, opts.attention_backend), "transformers": hf}
    results: dict = {"setup": {
        "flavor": opts.flavor, "device": str(device), "hardware": hardware(device), "dtype": opts.dtype,
        "attention_backend": opts.attention_backend, "batch": opts.batch, "seq_len": opts.seq_len,
        "image_grid": None if opts.text_only else list(opts.image_grid), "warmup": opts.warmup,
        "steps": opts.steps, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "params_m": sum(p.numel() for p in models["native"].parameters()) / 1e6,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }}
    for mode in opts.modes:
        for module in models.values():
            module.train(mode == "train")
        calls = calls_of(models, inputs, args, dtype, mode)
        entry = {}
        for name, times in time_calls(calls, opts.warmup, opts.steps, device).items():
            # The minimum is the least disturbed call on a shared machine; the median the typical one.
            entry[name] = {"median_s": statistics.median(times), "min_s": min(times), "all_s": times,
                           "tokens_per_s": inputs["input_ids"].numel() / statistics.median(times)}
            print(f"{mode:>8} {name:>13}: {entry[name]['median_s']:9.3f} s / call (min {entry[name]['min_s']:.3f})")
        if "transformers" in entry:
            entry["transformers_over_native"] = entry["transformers"]["median_s"] / entry["native"]["median_s"]
            print(f"{mode:>8} transformers / native time: {entry['transformers_over_native']:.2f}")
        results[mode] = entry
    if not opts.no_hf:
        for module in models.values():
            module.eval()
        # Same weights, same inputs: the logits must agree (also guards against timing a broken model).
        results["agreement"] = agreement(calls_of(models, inputs, args, dtype, "forward"))
        print(f"max |logit difference| {results['agreement']['max_abs_logit_diff']:.2e}, "
              f"argmax agreement {results['agreement']['argmax_agreement']:.4f}")
    if opts.out:
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
