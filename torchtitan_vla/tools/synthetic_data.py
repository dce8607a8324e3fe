"""A tool that writes tiny real instances of every data format (for trying the readers, benchmarks and tests).

    python -m torchtitan_vla.tools.synthetic_data lerobot OUT [--version v3.0] [--episodes 4] [--frames 20] ...
    python -m torchtitan_vla.tools.synthetic_data cc12m OUT [--items 32] [--shard-size 8]
    python -m torchtitan_vla.tools.synthetic_data obelics OUT [--docs 16]
    python -m torchtitan_vla.tools.synthetic_data all OUT      # every format under OUT/{lerobot_v21,lerobot_v30,cc12m,obelics}
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from torchtitan_vla.data.write_lerobot import write_lerobot_dataset
from torchtitan_vla.data.write_web import write_cc12m_shards, write_obelics_parquet

COLORS = ("red", "green", "blue", "yellow", "white", "black")
SHAPES = ("square", "circle", "cube", "ball")


def moving_square_frames(length: int, size: int, seed: int) -> np.ndarray:
    """uint8 (T, size, size, 3): a smooth background with a square moving across it (video-codec friendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    base = np.stack([yy, xx, 1 - yy], -1) * rng.uniform(80, 200, 3)
    frames = np.repeat(base[None], length, 0)
    side = max(size // 4, 2)
    start, velocity = rng.uniform(0, size - side, 2), rng.uniform(-1.5, 1.5, 2)
    color = rng.uniform(0, 255, 3)
    for t in range(length):
        y, x = (np.clip(start + velocity * t, 0, size - side)).astype(int)
        frames[t, y:y + side, x:x + side] = color
    return frames.astype(np.uint8)


def synthetic_episodes(num_episodes: int = 4, length: int = 20, cameras: tuple[str, ...] = (
        "observation.images.main", "observation.images.wrist"), size: int = 32, state_dim: int = 6,
        action_dim: int = 4, seed: int = 0, min_length: int | None = None) -> list[dict]:
    """Episodes in ``write_lerobot_dataset``'s format; lengths vary in [min_length, length]."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(num_episodes):
        n = int(rng.integers(min_length, length + 1)) if min_length else length
        episodes.append({
            "frames": {cam: moving_square_frames(n, size, seed * 1000 + e * 10 + c) for c, cam in enumerate(cameras)},
            "state": rng.normal(size=(n, state_dim)).astype(np.float32).cumsum(0),
            "action": rng.normal(size=(n, action_dim)).astype(np.float32),
            "task": f"move to the {COLORS[e % len(COLORS)]} {SHAPES[e % len(SHAPES)]}",
        })
    return episodes


def synthetic_captions(num_items: int = 32, size: int = 64, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(num_items):
        image = moving_square_frames(1, size, int(rng.integers(1 << 30)))[0]
        items.append((image, f"A {COLORS[i % len(COLORS)]} {SHAPES[i % len(SHAPES)]} on the table, number {i}."))
    return items


def synthetic_documents(num_docs: int = 16, size: int = 64, seed: int = 0) -> list[dict]:
    """OBELICS-style documents: text, image, text (and sometimes a second image)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(num_docs):
        images, texts = [None], [f"Page {d}: the {COLORS[d % len(COLORS)]} {SHAPES[d % len(SHAPES)]}."]
        for _ in range(1 + d % 2):
            images += [moving_square_frames(1, size, int(rng.integers(1 << 30)))[0], None]
            texts += [None, f"It is at the {('left', 'right', 'top', 'bottom')[int(rng.integers(4))]}."]
        docs.append({"images": images, "texts": texts})
    return docs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.tools.synthetic_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="format", required=True)
    lerobot = sub.add_parser("lerobot", help="a LeRobot dataset (parquet + mp4 via PyAV)")
    lerobot.add_argument("out")
    lerobot.add_argument("--version", choices=("v2.1", "v3.0"), default="v3.0")
    lerobot.add_argument("--episodes", type=int, default=4)
    lerobot.add_argument("--frames", type=int, default=20, help="frames per episode")
    lerobot.add_argument("--cameras", type=int, default=2)
    lerobot.add_argument("--size", type=int, default=64, help="camera height and width (even)")
    lerobot.add_argument("--fps", type=int, default=10)
    lerobot.add_argument("--state-dim", type=int, default=6)
    lerobot.add_argument("--action-dim", type=int, default=4)
    lerobot.add_argument("--seed", type=int, default=0)
    cc12m = sub.add_parser("cc12m", help="WebDataset tar shards of (jpg, txt)")
    cc12m.add_argument("out")
    cc12m.add_argument("--items", type=int, default=32)
    cc12m.add_argument("--shard-size", type=int, default=8)
    cc12m.add_argument("--size", type=int, default=64)
    obelics = sub.add_parser("obelics", help="OBELICS-style parquet of interleaved images and texts")
    obelics.add_argument("out")
    obelics.add_argument("--docs", type=int, default=16)
    obelics.add_argument("--files", type=int, default=2)
    obelics.add_argument("--size", type=int, default=64)
    everything = sub.add_parser("all", help="every format with default sizes")
    everything.add_argument("out")
    args = parser.parse_args(argv)

    if args.format in ("lerobot", "all"):
        versions = [args.version] if args.format == "lerobot" else ["v2.1", "v3.0"]
        for version in versions:
            out = args.out if args.format == "lerobot" else os.path.join(args.out, f"lerobot_{version.replace('.', '')}")
            if args.format == "lerobot":
                cams = tuple(f"observation.images.cam{i}" for i in range(args.cameras))
                eps = synthetic_episodes(args.episodes, args.frames, cams, args.size, args.state_dim,
                                         args.action_dim, args.seed)
                fps = args.fps
            else:
                eps, fps = synthetic_episodes(), 10
            write_lerobot_dataset(out, eps, fps=fps, version=version)
            print(f"wrote LeRobot {version}: {out}")
    if args.format in ("cc12m", "all"):
        out = args.out if args.format == "cc12m" else os.path.join(args.out, "cc12m")
        items = synthetic_captions(args.items, args.size) if args.format == "cc12m" else synthetic_captions()
        write_cc12m_shards(out, items, args.shard_size if args.format == "cc12m" else 8)
        print(f"wrote cc12m shards: {out}")
    if args.format in ("obelics", "all"):
        out = args.out if args.format == "obelics" else os.path.join(args.out, "obelics")
        docs = synthetic_documents(args.docs, args.size) if args.format == "obelics" else synthetic_documents()
        files = args.files if args.format == "obelics" else 2
        for f in range(files):
            write_obelics_parquet(os.path.join(out, f"obelics-{f:04d}.parquet"), docs[f::files])
        print(f"wrote OBELICS parquet: {out}")


if __name__ == "__main__":
    main()
