"""Fit a FAST action tokenizer on a LeRobot source's action chunks, exactly as training builds them.

    python scripts/fit_fast_tokenizer.py --config X.toml [--stage NAME] [--source NAME] [--vocab-size N]
        [--scale S] [--out FILE] [--holdout F] [--report FILE]

The chunks have the stage's horizon (``action_expert.action_horizon``) and go through the source's action
transform and normalisation (``data/action_chunks.py``). Whole episodes are held out (``--holdout``, a
fraction; at least one when the source has two or more): the tokenizer is fitted on the rest, and the
round trip is measured on the held-out chunks: reconstruction error in normalised units (mean and max
absolute, against the quantisation bound sqrt(H) * 0.5 / scale per dimension in L2), tokens per chunk
(mean, p95, max), decodes flagged invalid, and the fraction of coefficients clamped to the fitted range.

The tokenizer goes beside the source's normalisation statistics unless ``--out`` is given: the folder of
its ``stats_path``, else the dataset's ``meta/``, as ``fast_tokenizer.json``; point ``model.fast_tokenizer_path``
at it. The figures are printed and written as JSON (``--report``, default ``<out without .json>.report.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from torchtitan_vla.config import ConfigError, load_stages
from torchtitan_vla.config.validate import lerobot_source
from torchtitan_vla.data.action_chunks import source_action_chunks
from torchtitan_vla.processing.fast import FastTokenizer


def split_episodes(episode: np.ndarray, holdout: float) -> np.ndarray:
    """Mask of held-out chunks: a ``holdout`` fraction of the episodes (at least one of two or more), evenly
    spaced over the dataset, so a dataset written task by task holds out episodes of every task."""
    ids = np.unique(episode)
    count = min(len(ids) - 1, max(1, round(holdout * len(ids)))) if holdout > 0 else 0
    if count == 0:
        return np.zeros(len(episode), bool)
    return np.isin(episode, ids[np.linspace(len(ids) - 1, 0, count, endpoint=False).round().astype(int)])


def round_trip(tokenizer: FastTokenizer, chunks: np.ndarray) -> dict:
    """Reconstruction error and token counts of ``chunks`` through the tokenizer."""
    ids = tokenizer.encode_batch(chunks)
    decoded = [tokenizer.decode(row) for row in ids]
    error = np.abs(np.stack([d for d, _ in decoded]) - chunks)
    l2 = np.linalg.norm(np.stack([d for d, _ in decoded]) - chunks, axis=1)  # (N, D): over time, per dimension
    coeffs = tokenizer.coefficients(chunks)
    lengths = np.array([len(row) for row in ids])
    return {
        "chunks": len(chunks),
        "mean_abs_error": float(error.mean()),
        "max_abs_error": float(error.max()),
        "max_l2_error_per_dim": float(l2.max()),
        "l2_error_bound": tokenizer.l2_error_bound,
        "tokens_per_chunk": {"mean": float(lengths.mean()), "p95": float(np.percentile(lengths, 95)),
                             "max": int(lengths.max()), "uncompressed": tokenizer.horizon * tokenizer.action_dim},
        "invalid_decodes": int(sum(not ok for _, ok in decoded)),
        "clamped_coefficients": float(((coeffs < tokenizer.min_token) | (coeffs > tokenizer.max_token)).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config")
    parser.add_argument("--stage", help="its stage (default: the first)")
    parser.add_argument("--source", help="its LeRobot source (default: the only one)")
    parser.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (FAST ids)")
    parser.add_argument("--scale", type=float, default=10.0, help="DCT coefficients are multiplied by it, then rounded")
    parser.add_argument("--range-margin", type=float, default=0.0,
                        help="widen the integer alphabet by this fraction of the fitted range on each side")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction of episodes held out for the report")
    parser.add_argument("--out", help="tokenizer file (default: fast_tokenizer.json beside the source's stats)")
    parser.add_argument("--report", help="report JSON (default: beside --out)")
    args = parser.parse_args(argv)
    try:
        # Not cross-checked: a config that trains on (or decodes with) the tokenizer written here names a file
        # that does not exist yet. The source's own files are checked as they are read.
        stages = load_stages(args.config, validate=False)[1]
        stage, src = lerobot_source(stages, args.config, args.stage, args.source)
        horizon = stage.config.action_expert.action_horizon
        data = source_action_chunks(src, horizon, stage.config.data.timestamp_tolerance_s)
        held_out = split_episodes(data.episode, args.holdout)
        fit_chunks = data.chunks[~held_out]
        start = time.perf_counter()
        tokenizer = FastTokenizer.fit(fit_chunks, args.vocab_size, args.scale, range_margin=args.range_margin)
        fit_seconds = time.perf_counter() - start
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or os.path.join(os.path.dirname(src.stats_path) if src.stats_path
                                        else os.path.join(data.reader.root, "meta"), "fast_tokenizer.json"))
    tokenizer.save(out)
    report = {
        "config": args.config, "stage": stage.name, "source": src.name, "dataset": data.reader.root,
        "tokenizer": str(out), "horizon": tokenizer.horizon, "action_dim": tokenizer.action_dim,
        "scale": tokenizer.scale, "range_margin": args.range_margin, "vocab_size": tokenizer.vocab_size, "requested_vocab_size": args.vocab_size,
        "integer_range": [tokenizer.min_token, tokenizer.max_token], "fit_chunks": len(fit_chunks),
        "fit_seconds": round(fit_seconds, 3),
        "held_out_episodes": int(len(np.unique(data.episode[held_out]))),
        "held_out": round_trip(tokenizer, data.chunks[held_out]) if held_out.any() else None,
        "fit_set": round_trip(tokenizer, fit_chunks),
    }
    report_path = Path(args.report or out.with_name(out.stem + ".report.json"))
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"wrote {out} and {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
