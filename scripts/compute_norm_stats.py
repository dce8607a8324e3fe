"""Compute normalization stats (mean/std/min/max and q01..q99) of a LeRobot dataset's state and action,
after the source's state/action transform (picked dimensions, delta actions).

    python scripts/compute_norm_stats.py --config X.toml [--stage NAME] --source NAME --out stats.json
        [--horizon H] [--max-frames N]
    python scripts/compute_norm_stats.py DATASET_ROOT --out stats.json [--state-key K] [--action-key K]
        [--episodes 0 1 2] [--max-frames N]

With ``--config`` the source's keys, episodes and transform (``state_dims``, ``action_dims``,
``delta_action_dims``, ``delta_state_dims``) come from the config, and the action statistics are over
every step of the action chunks the model is trained on (H = ``action_expert.action_horizon``, steps past
an episode's end repeat its last action, as in training): a delta action depends on its distance from the
current frame. The file records the transform; a source whose transform differs refuses it.

The output has the format of LeRobot's ``meta/stats.json``; point the source's ``stats_path`` at it (needed
for delta actions, and for ``normalization = "quantile"`` on datasets whose stats lack q01/q99, e.g.
LeRobot v2.1). Quantiles are exact over the frames read; ``--max-frames`` subsamples evenly.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from torchtitan_vla.config import ConfigError, load_stages
from torchtitan_vla.config.validate import lerobot_source
from torchtitan_vla.data.action_transform import ActionTransform
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.normalize import TRANSFORM_KEY
from torchtitan_vla.data.robot import chunk_rows, frame_rows
from torchtitan_vla.data.stats import feature_stats


def compute(root: str, state_key: str, action_key: str, episodes: list[int] | None, max_frames: int,
            transform: ActionTransform | None = None, horizon: int = 1) -> dict:
    """Stats of the state and of the (transformed) action chunks of ``horizon`` steps at every frame read."""
    reader = LeRobotReader(root, state_key, action_key, camera_keys=None, episodes=episodes)
    transform = transform or ActionTransform()
    for key, problem in transform.problems(reader.state.shape[1], reader.action.shape[1]):
        raise ValueError(f"{root}: {key} {problem}")
    rows, last = frame_rows(reader)
    if max_frames and len(rows) > max_frames:
        pick = np.linspace(0, len(rows) - 1, max_frames).astype(int)
        rows, last = rows[pick], last[pick]
    state = reader.state[rows]
    actions = transform.to_model(state[:, None, :], reader.action[chunk_rows(rows, last, horizon)])  # as in training
    out = {state_key: feature_stats(transform.state(state)),
           action_key: feature_stats(actions.reshape(-1, actions.shape[-1]))}
    if transform != ActionTransform() or horizon > 1:
        out[TRANSFORM_KEY] = transform.to_dict()
    return out


def _from_config(args) -> tuple[str, str, str, list[int] | None, ActionTransform, int]:
    _, stages = load_stages(args.config, [])
    stage, src = lerobot_source(stages, args.config, args.stage, args.source)
    horizon = args.horizon or stage.config.action_expert.action_horizon
    return src.path, src.state_key, src.action_key, src.episodes or None, ActionTransform.from_source(src), horizon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", help="LeRobot dataset folder (without --config)")
    parser.add_argument("--dataset", help="the same as the positional ROOT")
    parser.add_argument("--config", help="a training config: the source's keys and transform come from it")
    parser.add_argument("--stage", help="the stage of --config (default: the first)")
    parser.add_argument("--source", help="the LeRobot source of --config")
    parser.add_argument("--out", required=True, help="where to write the stats JSON")
    parser.add_argument("--state-key", default="observation.state")
    parser.add_argument("--action-key", default="action")
    parser.add_argument("--episodes", type=int, nargs="*", default=None)
    parser.add_argument("--horizon", type=int, default=0, help="action chunk length (default: the config's, or 1)")
    parser.add_argument("--max-frames", type=int, default=0, help="0: every frame")
    args = parser.parse_args()
    if args.config:
        if not args.source:
            parser.error("--config needs --source NAME")
        try:
            root, state_key, action_key, episodes, transform, horizon = _from_config(args)
        except ConfigError as err:
            raise SystemExit(f"error: {err}") from None
    else:
        root = args.dataset or args.root
        if not root:
            parser.error("give the dataset folder (ROOT or --dataset) or --config with --source")
        state_key, action_key, episodes = args.state_key, args.action_key, args.episodes
        transform, horizon = ActionTransform(), args.horizon or 1
    stats = compute(root, state_key, action_key, episodes, args.max_frames, transform, horizon)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(stats, f, indent=2)
    dims = ", ".join(f"{key} ({len(value['mean'])} dims)" for key, value in stats.items() if key != TRANSFORM_KEY)
    print(f"wrote {args.out}: {dims}")


if __name__ == "__main__":
    main()
