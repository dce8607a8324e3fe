"""Compute normalization stats (mean/std/min/max and q01..q99) of a LeRobot dataset's state and action.

    python scripts/compute_norm_stats.py DATASET_ROOT --out stats.json   (or --dataset DATASET_ROOT) [--state-key K] [--action-key K]
        [--episodes 0 1 2] [--max-frames N]

The output has the format of LeRobot's ``meta/stats.json``; point a source's ``stats_path`` at it (needed
for ``normalization = "quantile"`` on datasets whose stats lack q01/q99, e.g. LeRobot v2.1). Quantiles are
exact over the frames read (not a histogram approximation); ``--max-frames`` subsamples evenly.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.stats import feature_stats


def compute(root: str, state_key: str, action_key: str, episodes: list[int] | None, max_frames: int) -> dict:
    reader = LeRobotReader(root, state_key, action_key, camera_keys=None, episodes=episodes)
    rows = np.concatenate([np.arange(ep.start, ep.start + ep.length) for ep in reader.episodes])
    if max_frames and len(rows) > max_frames:
        rows = rows[np.linspace(0, len(rows) - 1, max_frames).astype(int)]
    return {state_key: feature_stats(reader.state[rows]), action_key: feature_stats(reader.action[rows])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", help="LeRobot dataset folder (v2.1 or v3.0)")
    parser.add_argument("--dataset", help="the same as the positional ROOT")
    parser.add_argument("--out", required=True, help="where to write the stats JSON")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--episodes", type=int, nargs="*", default=None)
    parser.add_argument("--max-frames", type=int, default=0, help="0: every frame")
    args = parser.parse_args()
    root = args.dataset or args.root
    if not root:
        parser.error("give the dataset folder (ROOT or --dataset)")
    stats = compute(root, args.state_key, args.action_key, args.episodes, args.max_frames)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(stats, f, indent=2)
    dims = ", ".join(f"{key} ({len(value['mean'])} dims)" for key, value in stats.items())
    print(f"wrote {args.out}: {dims}")


if __name__ == "__main__":
    main()
