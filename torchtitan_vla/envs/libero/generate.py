"""Scripted LIBERO demonstrations written as a LeRobot dataset in the layout of a public LIBERO dataset.

    python -m torchtitan_vla.envs.libero.generate --out DIR [--layout openpi|lerobot] [--suite libero_object]
        [--tasks 0-9] [--init-states 0-39] [--image-size 256] [--replay-check]
    python -m torchtitan_vla.envs.libero.generate --replay DIR      # replay check of an existing dataset
    python -m torchtitan_vla.envs.libero.generate --success-only --init-states 40-49   # the controller's success

Layouts: ``openpi`` is ``physical-intelligence/libero`` (LeRobot v2.0; ``image`` and ``wrist_image`` as PNG
``image`` features, ``state`` float32[8], ``actions`` float32[7]); ``lerobot`` is ``HuggingFaceVLA/libero``
(v3.0; ``observation.images.image`` and ``observation.images.image2`` as mp4 videos, ``observation.state``,
``action``). Both declare fps 10 and record every 20 Hz control step after the ``NUM_WAIT_STEPS`` no-op
steps, as the public datasets do.

Each episode runs the scripted controller from one standard init state; only successful episodes are kept.
Finished episodes (successful or not) are staged under ``DIR/.generate/``, so a rerun skips them and only
rewrites the dataset; ``tokenizer.json`` is a debug-flavor tokenizer for CPU runs; ``meta/libero_episodes.jsonl`` names each episode's suite, task and init state so the
replay check (``replay_dataset``) can run it open-loop from the same state in a fresh environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass

import numpy as np

from torchtitan_vla.data.write_lerobot import write_lerobot_dataset
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer

from .env import (
    DATASET_FPS,
    DEFAULT_IMAGE_SIZE,
    NOOP_ACTION,
    NUM_WAIT_STEPS,
    LiberoEnv,
    LiberoObservation,
    base_suite,
    parse_indices,
    policy_message,
    suite_names,
    task_count,
    task_language,
)
from .scripted import PRIVILEGED_KEY, ScriptedPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    version: str
    image: str
    wrist_image: str
    state: str
    action: str
    images_as_video: bool


LAYOUTS = {
    "openpi": Layout("v2.0", "image", "wrist_image", "state", "actions", images_as_video=False),
    "lerobot": Layout("v3.0", "observation.images.image", "observation.images.image2", "observation.state",
                      "action", images_as_video=True),
}
EPISODES_FILE = "meta/libero_episodes.jsonl"
DEBUG_TOKENIZER = "tokenizer.json"
STAGING = ".generate"


def parse_range(spec: str, count: int, what: str) -> list[int]:
    """``"all"`` or ``parse_indices``' syntax -> indices, each checked against ``count``."""
    indices = list(range(count)) if spec == "all" else parse_indices(spec, what)
    bad = [i for i in indices if i >= count]
    if bad:
        raise ValueError(f"{what} {bad[0]} out of range (0-{count - 1})")
    return indices


def settled(env: LiberoEnv, init_state: int) -> LiberoObservation:
    """Reset to an init state and run the no-op wait steps (physics only): where a demonstration starts."""
    obs = env.reset(init_state, render=False)
    for _ in range(NUM_WAIT_STEPS):
        obs, _ = env.step(NOOP_ACTION, render=False)
    return obs


def scripted_actions(env: LiberoEnv, init_state: int, policy: ScriptedPolicy) -> np.ndarray | None:
    """Run the scripted controller from one init state without rendering; its actions if it succeeds."""
    obs = settled(env, init_state)
    actions = []
    for _ in range(env.max_steps):
        message = policy_message(obs, env.language)
        message[PRIVILEGED_KEY] = env.privileged()
        actions.append(policy.infer(message)["actions"][0])
        obs, success = env.step(actions[-1], render=False)
        if success:
            return np.stack(actions).astype(np.float32)
    return None


def replay_episode(env: LiberoEnv, init_state: int, actions: np.ndarray, record: bool = False) -> dict | None:
    """Open-loop replay from an init state: the wait steps, then ``actions``. None unless the goal holds after
    the last action; else the episode (with ``record``, the rendered frames and states before each action)."""
    obs = settled(env, init_state)
    if record:
        obs.image, obs.wrist_image = env.render()
    images, wrists, states = [], [], []
    success = False
    for action in actions:
        images.append(obs.image)
        wrists.append(obs.wrist_image)
        states.append(obs.state)
        obs, success = env.step(action, render=record)
    if not success:
        return None
    episode = {"state": np.stack(states), "action": np.asarray(actions, np.float32)}
    if record:
        episode.update(image=np.stack(images), wrist_image=np.stack(wrists))
    return episode


def _staged(folder: str, suite: str, task_id: int, init_state: int) -> str:
    return os.path.join(folder, STAGING, f"{suite}_task{task_id:02d}_init{init_state:03d}")


def generate(out: str, layout: str = "openpi", suite: str = "libero_object", tasks: str = "all",
             init_states: str = "0-39", image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0,
             progress: bool = True, simulate: bool = True) -> dict:
    """Generate, stage and write the dataset; returns {"attempted", "kept", "per_task": {task_id: kept/tried}}.
    ``simulate=False`` writes the episodes staged so far and runs none (to train on a run still in progress)."""
    from tqdm import tqdm

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    task_ids = parse_range(tasks, task_count(suite), f"{suite} task id")
    # Init state by init state across the tasks, so that a run stopped early has episodes of every task.
    jobs = [(t, i) for i in parse_range(init_states, 50, "init state") for t in task_ids]
    os.makedirs(os.path.join(out, STAGING), exist_ok=True)
    if not simulate:
        return write_dataset(out, layout, suite, [job for job in jobs if os.path.exists(_staged(out, suite, *job) + ".json")])
    policy = ScriptedPolicy(horizon=1)
    bar = tqdm(jobs, desc=f"{suite} demos", unit="ep", disable=not progress)
    env = None
    for task_id, init_state in bar:
        stem = _staged(out, suite, task_id, init_state)
        if os.path.exists(stem + ".json"):
            continue
        if env is None or env.task_id != task_id:
            if env is not None:
                env.close()
            env = LiberoEnv(suite, task_id, image_size=image_size, seed=seed)
        # Physics first, rendering only for a success: the replay is deterministic and costs no failed renders.
        actions = scripted_actions(env, init_state, policy)
        episode = None if actions is None else replay_episode(env, init_state, actions, record=True)
        if episode is not None:
            np.savez_compressed(stem + ".npz", **episode)
        record = {"suite": suite, "task_id": task_id, "init_state": init_state, "seed": seed,
                  "task": env.language, "success": episode is not None, "image_size": image_size,
                  "wait_steps": NUM_WAIT_STEPS}
        with open(stem + ".json", "w") as f:  # written last: marks the episode finished
            json.dump(record, f)
    if env is not None:
        env.close()
    return write_dataset(out, layout, suite, jobs)


def write_dataset(out: str, layout: str, suite: str, jobs: list[tuple[int, int]]) -> dict:
    """Write the staged successful episodes of ``jobs`` as the dataset at ``out``."""
    spec = LAYOUTS[layout]
    episodes, records, per_task = [], [], {}
    for task_id, init_state in jobs:
        stem = _staged(out, suite, task_id, init_state)
        with open(stem + ".json") as f:
            record = json.load(f)
        kept, tried = per_task.get(task_id, (0, 0))
        per_task[task_id] = (kept + record["success"], tried + 1)
        if not record["success"]:
            continue
        with np.load(stem + ".npz") as data:
            episodes.append({"frames": {spec.image: data["image"], spec.wrist_image: data["wrist_image"]},
                             "state": data["state"], "action": data["action"], "task": record["task"]})
        records.append({"episode_index": len(records), **record})
    if not episodes:
        raise RuntimeError(f"no successful scripted episode among {len(jobs)} in {suite}: nothing to write")
    write_lerobot_dataset(
        out, episodes, fps=DATASET_FPS, version=spec.version, robot_type="panda",
        image_keys=() if spec.images_as_video else (spec.image, spec.wrist_image),
        state_key=spec.state, action_key=spec.action,
    )
    with open(os.path.join(out, EPISODES_FILE), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    # The tiny debug flavor has no pretrained tokenizer: one that knows the words of every prompt of the suite
    # (its perturbed variants too), so held-out tasks and the diagnostics' prompts tokenize as well.
    prompts = [task_language(name, t) for name in suite_names(include_perturbed=True)
               if base_suite(name) == base_suite(suite) for t in range(task_count(name))]
    build_debug_tokenizer(os.path.join(out, DEBUG_TOKENIZER), extra_words=sorted({w for p in prompts for w in p.split()}))
    return {"attempted": len(jobs), "kept": len(episodes),
            "per_task": {str(t): f"{k}/{n}" for t, (k, n) in sorted(per_task.items())}}


def scripted_success(suite: str = "libero_object", tasks: str = "all", init_states: str = "40-49", seed: int = 0,
                     progress: bool = True) -> dict:
    """The scripted controller's success per task (physics only, nothing written): {task_id: successes/tried}."""
    from tqdm import tqdm

    policy = ScriptedPolicy(horizon=1)
    inits = parse_range(init_states, 50, "init state")
    result = {}
    for task_id in tqdm(parse_range(tasks, task_count(suite), f"{suite} task id"), desc="scripted", unit="task",
                        disable=not progress):
        env = LiberoEnv(suite, task_id, image_size=DEFAULT_IMAGE_SIZE, seed=seed)
        wins = sum(scripted_actions(env, i, policy) is not None for i in inits)
        env.close()
        result[str(task_id)] = {"task": env.language, "success": wins, "episodes": len(inits)}
        logger.info("task %d (%s): %d/%d", task_id, env.language, wins, len(inits))
    return result


def replay_dataset(folder: str, progress: bool = True) -> dict:
    """Replay every episode of a generated dataset open-loop, from its init state in a fresh environment,
    with the actions read back through the project's LeRobot reader. Returns {"episodes", "succeeded", "failed"}."""
    from tqdm import tqdm

    from torchtitan_vla.data.lerobot import LeRobotReader

    with open(os.path.join(folder, EPISODES_FILE)) as f:
        records = [json.loads(line) for line in f if line.strip()]
    info = json.load(open(os.path.join(folder, "meta", "info.json")))
    spec = next(s for s in LAYOUTS.values() if s.action in info["features"] and s.version == info["codebase_version"])
    reader = LeRobotReader(folder, state_key=spec.state, action_key=spec.action)
    failed = []
    for record, episode in tqdm(list(zip(records, reader.episodes)), desc="replay", unit="ep", disable=not progress):
        env = LiberoEnv(record["suite"], record["task_id"], image_size=record["image_size"], seed=record["seed"])
        actions = reader.action[episode.start:episode.start + episode.length]
        if replay_episode(env, record["init_state"], actions) is None:
            failed.append(record["episode_index"])
        env.close()
    return {"episodes": len(records), "succeeded": len(records) - len(failed), "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.envs.libero.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="dataset folder (created; a rerun resumes)")
    parser.add_argument("--layout", default="openpi", choices=sorted(LAYOUTS))
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--tasks", default="all", help="task ids: all, N, A-B or a comma list")
    parser.add_argument("--init-states", default="0-39", help="init states (the default leaves 40-49 held out)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replay-check", action="store_true", help="after writing, replay every episode")
    parser.add_argument("--write-only", action="store_true",
                        help="write the episodes finished so far without running more (another run may still go on)")
    parser.add_argument("--replay", metavar="DIR", help="only replay-check an existing generated dataset")
    parser.add_argument("--success-only", action="store_true",
                        help="only measure the scripted controller's success on --tasks x --init-states (no files)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.replay:
            report = {"replay": replay_dataset(args.replay)}
        elif args.success_only:
            report = {"suite": args.suite, "init_states": args.init_states, "seed": args.seed,
                      "scripted_success": scripted_success(args.suite, args.tasks, args.init_states, args.seed)}
        else:
            if not args.out:
                parser.error("--out is required (or --replay DIR)")
            report = generate(args.out, args.layout, args.suite, args.tasks, args.init_states, args.image_size,
                              args.seed, simulate=not args.write_only)
            if args.replay_check:
                report["replay"] = replay_dataset(args.out)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    replay = report.get("replay")
    return 1 if replay and replay["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
