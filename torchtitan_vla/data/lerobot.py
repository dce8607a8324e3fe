"""Reader of LeRobot datasets on disk (v2.0, v2.1 and v3.0), written here without the ``lerobot`` package.

All numeric columns (state, action, timestamps, task index) are loaded once into numpy; camera frames
are decoded on demand from mp4 (``video`` features) or from the parquet's PNG/JPEG cells (``image``
features). Every layout is reduced to the same in-memory view, so copies of the same episodes in any
version give identical frames. v2.0 differs from v2.1 only by its single ``meta/stats.json`` (v2.1
has per-episode ``meta/episodes_stats.jsonl``).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .lerobot_images import VISUAL_DTYPES, ParquetImages, default_camera_keys
from .video import FrameTimestampError, VideoDecoder

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
DEFAULT_TOLERANCE_S = 1e-4
"""LeRobot's own default ``tolerance_s``: the largest gap between a requested and a stored timestamp."""


@dataclass
class Episode:
    index: int
    """The dataset's ``episode_index``."""
    start: int
    """First row of the episode in the reader's arrays."""
    length: int
    """Number of frames."""
    task: str
    """Task text of the episode's first frame (the task can change per frame: ``LeRobotReader.task``)."""
    videos: dict[str, tuple[str, float]]
    """Video camera key -> (mp4 path, time of the episode's first frame inside that file)."""


def _read_json(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """The table, or one line naming the file when it is truncated or not parquet."""
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path}: unreadable parquet file (truncated or corrupt?): {err}") from None


def _column_2d(table: pa.Table, key: str) -> np.ndarray:
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(column), -1)
    return np.asarray(column.to_numpy(zero_copy_only=False), np.float32).reshape(-1, 1)


def _indexed_texts(path: str, index_column: str) -> dict[int, str]:
    """LeRobot's tasks/subtasks parquet: the text is the pandas index (``__index_level_0__``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"LeRobot dataset file not found: {path}")
    table = _read_parquet(path)
    names = [n for n in table.column_names if n != index_column]
    text_column = next((n for n in ("__index_level_0__", "task", "subtask") if n in names), None)
    if text_column is None or index_column not in table.column_names:
        raise ValueError(f"{path}: expected column '{index_column}' and the text as index; got {table.column_names}")
    return dict(zip(table.column(index_column).to_pylist(), table.column(text_column).to_pylist()))


class LeRobotReader:
    """Metadata, per-frame arrays (state, action, task) and camera frames of one LeRobot dataset."""

    def __init__(self, root: str, state_key: str = "observation.state", action_key: str = "action",
                 camera_keys: list[str] | None = None, episodes: list[int] | None = None,
                 tolerance_s: float = DEFAULT_TOLERANCE_S):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"LeRobot dataset folder not found: {root}")
        self.root = root
        info_path = os.path.join(root, "meta", "info.json")
        self.info = _read_json(info_path)
        self.version = self.info.get("codebase_version", "")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"{info_path}: codebase_version {self.version!r} is not one of {SUPPORTED_VERSIONS}")
        for key in ("fps", "features"):
            if key not in self.info:
                raise ValueError(f"{info_path}: missing key '{key}'")
        self.fps = float(self.info["fps"])
        self.features: dict = self.info["features"]
        self.tolerance_s = tolerance_s
        visual = [k for k, f in self.features.items() if f.get("dtype") in VISUAL_DTYPES]
        for key, role in ((state_key, "state_key"), (action_key, "action_key")):
            if key not in self.features:
                raise ValueError(f"{root}: {role} '{key}' is not a feature of the dataset; "
                                 f"features are {sorted(self.features)}")
        for key in camera_keys or []:
            if key not in visual:
                kind = f"a {self.features[key]['dtype']} feature" if key in self.features else "not a feature"
                raise ValueError(f"{root}: camera key '{key}' is {kind}; image and video features are {visual}")
        self.camera_keys = list(camera_keys) if camera_keys else default_camera_keys(self.features)
        self.image_keys = [k for k in self.camera_keys if self.features[k]["dtype"] == "image"]
        self.video_keys = [k for k in self.camera_keys if self.features[k]["dtype"] == "video"]
        self.state_key, self.action_key = state_key, action_key

        self.files, table = self._read_frames()
        order = np.lexsort((table.column("frame_index").to_numpy(), table.column("episode_index").to_numpy()))
        table = table.take(pa.array(order))
        self.row_file = table.column("__file").to_numpy()
        self.row_in_file = table.column("__row").to_numpy()
        self.state = _column_2d(table, state_key)
        self.action = _column_2d(table, action_key)
        self.timestamp = table.column("timestamp").to_numpy().astype(np.float64)
        self.frame_index = table.column("frame_index").to_numpy()
        episode_of_row = table.column("episode_index").to_numpy()
        self.task_of_row = table.column("task_index").to_numpy()
        self.tasks = self._read_tasks()
        self.language = self._read_language(table)
        video_meta = self._read_video_meta() if self.video_keys else {}
        ids, starts, lengths = np.unique(episode_of_row, return_index=True, return_counts=True)
        wanted = set(episodes) if episodes else None
        if wanted is not None and not wanted <= set(ids.tolist()):
            raise ValueError(f"{root}: episodes {sorted(wanted - set(ids.tolist()))} are not in the dataset")
        self.episodes: list[Episode] = []
        for ep, start, length in zip(ids.tolist(), starts.tolist(), lengths.tolist()):
            if wanted is not None and ep not in wanted:
                continue
            unknown = set(self.task_of_row[start:start + length].tolist()) - set(self.tasks)
            if unknown:
                raise ValueError(f"{self.files[self.row_file[start]]}: task_index {sorted(unknown)} of episode {ep} "
                                 "is not in the tasks table")
            self._check_timestamps(ep, start, length)
            videos_of_ep = {cam: video_meta[ep][cam] for cam in self.video_keys}
            for path, _ in videos_of_ep.values():
                if not os.path.exists(path):
                    raise FileNotFoundError(f"{root}: video file of episode {ep} not found: {path}")
            task = self.tasks[int(self.task_of_row[start])]
            self.episodes.append(Episode(ep, start, length, task, videos_of_ep))
        if not self.episodes:
            raise ValueError(f"{root}: no episodes selected")
        self.decoder = VideoDecoder(tolerance_s=tolerance_s)
        self.images = ParquetImages(root, self.files)

    # -- metadata ------------------------------------------------------------------------------------

    def _read_frames(self) -> tuple[list[str], pa.Table]:
        columns = [self.state_key, self.action_key, "timestamp", "frame_index", "episode_index", "task_index"]
        files = sorted(glob.glob(os.path.join(self.root, "data", "**", "*.parquet"), recursive=True))
        if not files:
            raise FileNotFoundError(f"{self.root}: no parquet files under data/")
        self.text_keys = [k for k, f in self.features.items() if f.get("dtype") == "string" and k not in columns]
        if "subtask_index" in self.features:
            self.text_keys.append("subtask_index")
        tables = []
        for number, path in enumerate(files):
            try:
                names = pq.read_schema(path).names
            except (pa.ArrowException, OSError) as err:
                raise ValueError(f"{path}: unreadable parquet file (truncated or corrupt?): {err}") from None
            missing = [c for c in columns if c not in names]
            if missing:
                raise ValueError(f"{path}: missing columns {missing}")
            table = _read_parquet(path, columns + [k for k in self.text_keys if k in names])
            table = table.append_column("__file", pa.array(np.full(len(table), number, np.int32)))
            tables.append(table.append_column("__row", pa.array(np.arange(len(table), dtype=np.int64))))
        return files, pa.concat_tables(tables, promote_options="default")

    def _read_tasks(self) -> dict[int, str]:
        if self.version != "v3.0":
            rows = _read_jsonl(os.path.join(self.root, "meta", "tasks.jsonl"))
            return {int(r["task_index"]): r["task"] for r in rows}
        return _indexed_texts(os.path.join(self.root, "meta", "tasks.parquet"), "task_index")

    def _read_language(self, table: pa.Table) -> dict[str, np.ndarray]:
        """Per-frame language columns besides the task: string features, and ``subtask`` (LeRobot's
        ``subtask_index`` into ``meta/subtasks.parquet``)."""
        out = {}
        for key in self.text_keys:
            if key not in table.column_names:
                continue
            values = table.column(key).to_pylist()
            if key == "subtask_index":
                texts = _indexed_texts(os.path.join(self.root, "meta", "subtasks.parquet"), "subtask_index")
                out["subtask"] = np.array([texts.get(v, "") if v is not None else "" for v in values], dtype=object)
            else:
                out[key] = np.array([v or "" for v in values], dtype=object)
        return out

    def _check_timestamps(self, ep: int, start: int, length: int) -> None:
        """Consecutive timestamps of an episode are 1/fps apart within the tolerance (LeRobot's check)."""
        stamps = self.timestamp[start:start + length]
        expected = stamps[0] + np.arange(length) / self.fps
        bad = np.flatnonzero(np.abs(stamps - expected) > self.tolerance_s)
        if len(bad):
            row = start + int(bad[0])
            raise ValueError(
                f"{self.files[self.row_file[row]]}: episode {ep} frame {int(self.frame_index[row])} has timestamp "
                f"{stamps[bad[0]]:.6f}s, expected {expected[bad[0]]:.6f}s at {self.fps:g} fps (off by more than "
                f"the timestamp tolerance {self.tolerance_s:g}s, data.timestamp_tolerance_s)")

    def _read_video_meta(self) -> dict[int, dict[str, tuple[str, float]]]:
        """episode -> camera -> (mp4 path, start time of the episode in that file)."""
        out: dict[int, dict[str, tuple[str, float]]] = {}
        template = self.info.get("video_path")
        if not template:
            raise ValueError(f"{self.root}/meta/info.json: video features {self.video_keys} but no 'video_path'")
        if self.version != "v3.0":
            chunks_size = int(self.info.get("chunks_size", 1000))
            for row in _read_jsonl(os.path.join(self.root, "meta", "episodes.jsonl")):
                ep = int(row["episode_index"])
                out[ep] = {
                    cam: (os.path.join(self.root, template.format(
                        episode_chunk=ep // chunks_size, video_key=cam, episode_index=ep)), 0.0)
                    for cam in self.video_keys
                }
            return out
        files = sorted(glob.glob(os.path.join(self.root, "meta", "episodes", "**", "*.parquet"), recursive=True))
        if not files:
            raise FileNotFoundError(f"{self.root}: no parquet files under meta/episodes/")
        for path in files:
            table = _read_parquet(path).to_pydict()
            for cam in self.video_keys:
                if f"videos/{cam}/from_timestamp" not in table:
                    raise ValueError(f"{path}: missing column 'videos/{cam}/from_timestamp'")
            for i, ep in enumerate(table["episode_index"]):
                out[int(ep)] = {
                    cam: (os.path.join(self.root, template.format(
                        video_key=cam, chunk_index=table[f"videos/{cam}/chunk_index"][i],
                        file_index=table[f"videos/{cam}/file_index"][i])),
                        float(table[f"videos/{cam}/from_timestamp"][i]))
                    for cam in self.video_keys
                }
        return out

    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """The dataset's own stats: ``meta/stats.json`` (v2.0, v3.0; v2.1 when present), else (v2.1)
        ``meta/episodes_stats.jsonl`` aggregated."""
        path = os.path.join(self.root, "meta", "stats.json")
        if os.path.exists(path) or self.version != "v2.1":
            raw = _read_json(path)
        else:
            raw = aggregate_episode_stats(_read_jsonl(os.path.join(self.root, "meta", "episodes_stats.jsonl")))
        return {key: {k: np.asarray(v, np.float64) for k, v in s.items()} for key, s in raw.items()}

    # -- frames --------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return sum(ep.length for ep in self.episodes)

    def where(self, episode: Episode, frame_index: int) -> str:
        """'<data file>: episode E frame F' for error messages."""
        row = episode.start + frame_index
        return f"{self.files[self.row_file[row]]}: episode {episode.index} frame {int(self.frame_index[row])}"

    def task(self, episode: Episode, frame_index: int) -> str:
        """The task text of that frame (LeRobot's per-frame ``task_index``)."""
        return self.tasks[int(self.task_of_row[episode.start + frame_index])]

    def frames(self, episode: Episode, frame_index: int) -> dict[str, np.ndarray]:
        """uint8 (H, W, 3) image of every camera at ``frame_index`` of ``episode``, at its native size."""
        row = episode.start + frame_index
        t = float(self.timestamp[row])
        out = {}
        for cam in self.camera_keys:
            try:
                if cam in episode.videos:
                    path, offset = episode.videos[cam]
                    out[cam] = self.decoder.frames_at(path, [offset + t])[0]
                else:
                    out[cam] = self.images.frame(int(self.row_file[row]), int(self.row_in_file[row]), cam)
            except FrameTimestampError as err:
                raise FrameTimestampError(f"{self.where(episode, frame_index)} (t={t:.4f}s): {err}") from None
        return out


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
