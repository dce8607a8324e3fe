"""Reader of LeRobot datasets on disk (v2.1 and v3.0), written here without the ``lerobot`` package.

All numeric columns (state, action, timestamps) are loaded once into numpy; camera frames are decoded
from mp4 on demand. Both layouts are reduced to the same in-memory view, so a v2.1 and a v3.0 copy of the
same episodes give identical frames.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .video import VideoDecoder

SUPPORTED_VERSIONS = ("v2.1", "v3.0")


@dataclass
class Episode:
    index: int
    """The dataset's ``episode_index``."""
    start: int
    """First row of the episode in the reader's arrays."""
    length: int
    """Number of frames."""
    task: str
    """Task text (the instruction)."""
    videos: dict[str, tuple[str, float]]
    """Camera key -> (mp4 path, time of the episode's first frame inside that file)."""


def _read_json(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
    with open(path) as f:
        return json.load(f)


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _column_2d(table: pa.Table, key: str) -> np.ndarray:
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(column), -1)
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float32).reshape(-1, 1)


class LeRobotReader:
    """Metadata, per-frame arrays and camera frames of one LeRobot dataset."""

    def __init__(self, root: str, state_key: str = "observation.state", action_key: str = "action",
                 camera_keys: list[str] | None = None, episodes: list[int] | None = None):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"LeRobot dataset folder not found: {root}")
        self.root = root
        self.info = _read_json(os.path.join(root, "meta", "info.json"))
        self.version = self.info.get("codebase_version", "")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"{root}: codebase_version {self.version!r} is not one of {SUPPORTED_VERSIONS}")
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        videos = [k for k, f in self.features.items() if f["dtype"] == "video"]
        for key, role in ((state_key, "state_key"), (action_key, "action_key")):
            if key not in self.features:
                raise ValueError(f"{root}: {role} '{key}' is not a feature of the dataset; "
                                 f"features are {sorted(self.features)}")
        for key in camera_keys or []:
            if key not in videos:
                kind = f"a {self.features[key]['dtype']} feature" if key in self.features else "not a feature"
                raise ValueError(f"{root}: camera key '{key}' is {kind}; video features are {videos}")
        self.camera_keys = list(camera_keys) if camera_keys else videos
        self.state_key, self.action_key = state_key, action_key

        table = self._read_frames()
        order = np.lexsort((table.column("frame_index").to_numpy(), table.column("episode_index").to_numpy()))
        table = table.take(pa.array(order))
        self.state = _column_2d(table, state_key)
        self.action = _column_2d(table, action_key)
        self.timestamp = table.column("timestamp").to_numpy().astype(np.float64)
        episode_of_row = table.column("episode_index").to_numpy()
        task_of_row = table.column("task_index").to_numpy()
        tasks = self._read_tasks()
        video_meta = self._read_video_meta()
        ids, starts, lengths = np.unique(episode_of_row, return_index=True, return_counts=True)
        wanted = set(episodes) if episodes else None
        if wanted is not None and not wanted <= set(ids.tolist()):
            raise ValueError(f"{root}: episodes {sorted(wanted - set(ids.tolist()))} are not in the dataset")
        self.episodes: list[Episode] = []
        for ep, start, length in zip(ids.tolist(), starts.tolist(), lengths.tolist()):
            if wanted is not None and ep not in wanted:
                continue
            task_index = int(task_of_row[start])
            if task_index not in tasks:
                raise ValueError(f"{root}: task_index {task_index} of episode {ep} is not in the tasks table")
            videos_of_ep = {cam: video_meta[ep][cam] for cam in self.camera_keys}
            for path, _ in videos_of_ep.values():
                if not os.path.exists(path):
                    raise FileNotFoundError(f"{root}: video file of episode {ep} not found: {path}")
            self.episodes.append(Episode(ep, start, length, tasks[task_index], videos_of_ep))
        if not self.episodes:
            raise ValueError(f"{root}: no episodes selected")
        self.decoder = VideoDecoder(tolerance_s=0.4 / self.fps)

    # -- metadata ------------------------------------------------------------------------------------

    def _read_frames(self) -> pa.Table:
        columns = [self.state_key, self.action_key, "timestamp", "frame_index", "episode_index", "task_index"]
        files = sorted(glob.glob(os.path.join(self.root, "data", "**", "*.parquet"), recursive=True))
        if not files:
            raise FileNotFoundError(f"{self.root}: no parquet files under data/")
        tables = []
        for path in files:
            names = pq.read_schema(path).names
            missing = [c for c in columns if c not in names]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}")
            tables.append(pq.read_table(path, columns=columns))
        return pa.concat_tables(tables)

    def _read_tasks(self) -> dict[int, str]:
        if self.version == "v2.1":
            rows = _read_jsonl(os.path.join(self.root, "meta", "tasks.jsonl"))
            return {int(r["task_index"]): r["task"] for r in rows}
        path = os.path.join(self.root, "meta", "tasks.parquet")
        if not os.path.exists(path):
            raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
        table = pq.read_table(path)
        # LeRobot writes the task text as the pandas index; our writer as a "task" column.
        text_column = "task" if "task" in table.column_names else "__index_level_0__"
        return dict(zip(table.column("task_index").to_pylist(), table.column(text_column).to_pylist()))

    def _read_video_meta(self) -> dict[int, dict[str, tuple[str, float]]]:
        """episode -> camera -> (mp4 path, start time of the episode in that file)."""
        out: dict[int, dict[str, tuple[str, float]]] = {}
        template = self.info["video_path"]
        if self.version == "v2.1":
            chunks_size = int(self.info.get("chunks_size", 1000))
            for row in _read_jsonl(os.path.join(self.root, "meta", "episodes.jsonl")):
                ep = int(row["episode_index"])
                out[ep] = {
                    cam: (os.path.join(self.root, template.format(
                        episode_chunk=ep // chunks_size, video_key=cam, episode_index=ep)), 0.0)
                    for cam in self.camera_keys
                }
            return out
        files = sorted(glob.glob(os.path.join(self.root, "meta", "episodes", "**", "*.parquet"), recursive=True))
        if not files:
            raise FileNotFoundError(f"{self.root}: no parquet files under meta/episodes/")
        for path in files:
            table = pq.read_table(path).to_pydict()
            for cam in self.camera_keys:
                if f"videos/{cam}/from_timestamp" not in table:
                    raise ValueError(f"{path}: missing column 'videos/{cam}/from_timestamp'")
            for i, ep in enumerate(table["episode_index"]):
                out[int(ep)] = {
                    cam: (os.path.join(self.root, template.format(
                        video_key=cam, chunk_index=table[f"videos/{cam}/chunk_index"][i],
                        file_index=table[f"videos/{cam}/file_index"][i])),
                        float(table[f"videos/{cam}/from_timestamp"][i]))
                    for cam in self.camera_keys
                }
        return out

    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The dataset's own stats: ``meta/stats.json``, else (v2.1) ``meta/episodes_stats.jsonl`` aggregated."""
        path = os.path.join(self.root, "meta", "stats.json")
        if os.path.exists(path):
            raw = _read_json(path)
        else:
            raw = aggregate_episode_stats(_read_jsonl(os.path.join(self.root, "meta", "episodes_stats.jsonl")))
        return {key: {k: np.asarray(v, np.float64) for k, v in s.items()} for key, s in raw.items()}

    # -- frames --------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return sum(ep.length for ep in self.episodes)

    def frames(self, episode: Episode, frame_index: int, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """uint8 (H, W, 3) image of every camera at ``frame_index`` of ``episode``."""
        t = float(self.timestamp[episode.start + frame_index])
        return {cam: self.decoder.frames_at(path, [offset + t], size)[0]
                for cam, (path, offset) in episode.videos.items()}


def aggregate_episode_stats(rows: list[dict]) -> dict[str, dict[str, list]]:
    """Combine v2.1 per-episode stats (min/max/mean/std/count) into dataset stats (pooled mean and std)."""
    if not rows:
        raise ValueError("episodes_stats.jsonl is empty")
    out = {}
    for key in rows[0]["stats"]:
        per = [r["stats"][key] for r in rows if key in r["stats"]]
        counts = np.array([np.asarray(p["count"], np.float64).reshape(-1)[0] for p in per])[:, None]
        means = np.array([p["mean"] for p in per], np.float64).reshape(len(per), -1)
        stds = np.array([p["std"] for p in per], np.float64).reshape(len(per), -1)
        mean = (counts * means).sum(0) / counts.sum()
        var = (counts * (stds**2 + (means - mean) ** 2)).sum(0) / counts.sum()
        out[key] = {
            "min": np.min([np.asarray(p["min"], np.float64).reshape(-1) for p in per], 0).tolist(),
            "max": np.max([np.asarray(p["max"], np.float64).reshape(-1) for p in per], 0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(counts.sum())],
        }
    return out
