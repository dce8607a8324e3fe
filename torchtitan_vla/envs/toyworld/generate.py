"""Write the toy world's datasets in the real formats: the embedded data of the debug curriculum.

    python -m torchtitan_vla.envs.toyworld.generate --out DIR [--seed 0 --episodes 2000 ...]

writes
    DIR/web/captions/   cc12m-style WebDataset shards: a rendered table + a caption listing shapes and places
    DIR/web/documents/  OBELICS-style parquet: interleaved texts and images about the same tables
    DIR/robot/          LeRobot v3.0: camera ``observation.images.top``, ``observation.state`` = agent xy,
                        ``action`` = delta xy, task = the instruction; scripted demonstrations
                        (``--num-targets 2``: multi-step tasks, per-frame ``subtask_index`` labels)
    DIR/tokenizer.json  a debug-flavor tokenizer that knows every word of these texts (``build_debug_tokenizer``)
    DIR/toyworld.json   what was generated (written last: its presence means the data is complete)

The same arguments always give the same data; when ``DIR/toyworld.json`` already records them, nothing is
written. Scenes of each part come from their own random stream, all different from the closed-loop
evaluation's scenes (``ToyWorld.from_seed``), so evaluation is on held-out tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np

from torchtitan_vla.data.write_lerobot import write_lerobot_dataset
from torchtitan_vla.data.write_web import write_cc12m_shards, write_obelics_parquet
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.utils.logging import init_logging, logger

from .demos import demo_episode
from .instructions import caption, document_texts, position_phrase
from .render import draw_agent, render_scene, render_table, world_to_pixel
from .world import WorldConfig, sample_scene

CAMERA_KEY = "observation.images.top"
MANIFEST = "toyworld.json"
PARTS = ("web/captions", "web/documents", "robot", "tokenizer.json")
_STREAM = {"robot": 0, "captions": 1, "documents": 2}
"""Random stream of each part: scene i of a part is drawn with seed (seed, stream, i)."""


@dataclass
class GenerateConfig:
    seed: int = 0
    """Seed of every scene, demonstration and text."""

    episodes: int = 2000
    """Scripted demonstrations in the LeRobot dataset (with 600 a debug policy fit its training tables
    much better than held-out ones: more tables, better generalisation, ~6 s more per 1000)."""

    captions: int = 3000
    """Image-caption pairs in the cc12m shards."""

    documents: int = 1000
    """Interleaved documents in the OBELICS parquet."""

    fps: int = 10
    """Frame rate recorded in the LeRobot dataset (one frame per world step)."""

    shard_size: int = 1000
    """Image-caption pairs per cc12m tar shard."""

    world: WorldConfig = field(default_factory=WorldConfig)
    """The world the scenes come from."""


def _rng(config: GenerateConfig, part: str, index: int) -> np.random.Generator:
    return np.random.default_rng((config.seed, _STREAM[part], index))


def episode_scene_seed(config: GenerateConfig, index: int) -> np.random.Generator:
    """The generator ``sample_scene`` draws robot episode ``index``'s scene from."""
    return _rng(config, "robot", index)


def _agent_phrase(xy, grid_size: int) -> str:
    return f"The agent is at {position_phrase(*world_to_pixel(xy, grid_size), grid_size)}."


def caption_items(config: GenerateConfig) -> list[tuple[np.ndarray, str]]:
    """(image, caption) pairs: a table with the agent, its shapes and places in words."""
    items = []
    for i in range(config.captions):
        scene = sample_scene(_rng(config, "captions", i), config.world)
        text = f"{caption(scene)} {_agent_phrase(scene.agent_start, config.world.grid_size)}"
        items.append((render_scene(scene), text))
    return items


def documents(config: GenerateConfig) -> list[dict]:
    """OBELICS-style documents: ``texts`` and ``images`` lists of equal length, one of them None per slot."""
    docs = []
    for i in range(config.documents):
        rng = _rng(config, "documents", i)
        scene = sample_scene(rng, config.world)
        intro, middle, outro = document_texts(scene, rng)
        table = render_table(scene)
        images = [None, table, None, draw_agent(table, scene.agent_start), None]
        texts = [intro, None, middle, None, outro]
        docs.append({"texts": texts, "images": images})
    return docs


def demo_episodes(config: GenerateConfig) -> list[dict]:
    return [demo_episode(sample_scene(episode_scene_seed(config, i), config.world)) for i in range(config.episodes)]


def _words(texts: list[str]) -> list[str]:
    """The distinct words of ``texts`` without punctuation, sorted (so the tokenizer is deterministic)."""
    return sorted({word.strip(".,;:") for text in texts for word in text.split()} - {""})


def _manifest(config: GenerateConfig) -> dict:
    manifest = {"format_version": 1, **asdict(config)}
    if config.world.num_targets == 1:  # data made before multi-step worlds existed keeps matching
        del manifest["world"]["num_targets"]
    return manifest


def _read_manifest(out: str) -> dict | None:
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        # asdict turns tuples into lists; a JSON round trip makes the two manifests comparable
        return json.load(f)


def _differences(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) of every setting that differs between two manifests."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def world_of(out: str) -> WorldConfig:
    """The world the data in ``out`` was generated from (its manifest), e.g. to evaluate on the same world."""
    manifest = _read_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"{out} holds no generated toy-world data ({MANIFEST} is missing)")
    world = manifest["world"]
    return WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in world.items()})


def generate(out: str, config: GenerateConfig | None = None) -> bool:
    """Write the three datasets under ``out``; returns False when identical data is already there."""
    config = config or GenerateConfig()
    wanted = json.loads(json.dumps(_manifest(config)))
    existing = _read_manifest(out)
    if existing == wanted:
        logger.info(f"toy world data already in {out}; skipping")
        return False
    present = [p for p in PARTS if os.path.exists(os.path.join(out, p))]
    if existing is not None:
        changed = ", ".join(f"{key}: {old!r} there, {new!r} wanted" for key, old, new in _differences(existing, wanted))
        raise FileExistsError(f"{out} already holds toy-world data made with other settings ({changed}); "
                              f"remove {out} or choose another --out")
    if present:
        raise FileExistsError(f"{out} holds parts of toy-world data without its {MANIFEST} (an interrupted copy? "
                              f"{present}); remove {out} or choose another --out")
    staging = os.path.join(out, ".staging")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run of ours
    os.makedirs(os.path.join(staging, "web"))
    logger.info(f"writing {config.captions} captions, {config.documents} documents, {config.episodes} episodes to {out}")
    captions, docs, episodes = caption_items(config), documents(config), demo_episodes(config)
    write_cc12m_shards(os.path.join(staging, "web", "captions"), captions, shard_size=config.shard_size)
    write_obelics_parquet(os.path.join(staging, "web", "documents", "train-00000.parquet"), docs)
    write_lerobot_dataset(os.path.join(staging, "robot"), episodes, fps=config.fps, version="v3.0")
    texts = [text for _, text in captions] + [t for d in docs for t in d["texts"] if t] + [e["task"] for e in episodes]
    build_debug_tokenizer(os.path.join(staging, "tokenizer.json"), extra_words=_words(texts))
    os.makedirs(os.path.join(out, "web"), exist_ok=True)
    for part in PARTS:
        os.replace(os.path.join(staging, part), os.path.join(out, part))
    shutil.rmtree(staging)
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(wanted, f, indent=2)
    return True


def main(argv: list[str] | None = None) -> None:
    defaults, world = GenerateConfig(), WorldConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--episodes", type=int, default=defaults.episodes, help="robot demonstrations")
    parser.add_argument("--captions", type=int, default=defaults.captions, help="cc12m image-caption pairs")
    parser.add_argument("--documents", type=int, default=defaults.documents, help="OBELICS documents")
    parser.add_argument("--image-size", type=int, default=world.image_size, help="rendered image side in pixels")
    parser.add_argument("--num-shapes", type=int, default=world.num_shapes, help="shapes per table")
    parser.add_argument("--num-targets", type=int, default=world.num_targets,
                        help="shapes to visit in order (2: the multi-step world with per-frame subtask labels)")
    parser.add_argument("--shared-attributes", action="store_true",
                        help="the harder world: the target shares its colour with one shape and its kind with another")
    args = parser.parse_args(argv)
    init_logging()
    for name in ("episodes", "captions", "documents"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        world = WorldConfig(image_size=args.image_size, num_shapes=args.num_shapes, num_targets=args.num_targets,
                            shared_attributes=args.shared_attributes)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    config = GenerateConfig(args.seed, args.episodes, args.captions, args.documents, world=world)
    try:
        generate(args.out, config)
    except FileExistsError as err:  # run_train.sh shows this line, not a traceback
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
