"""Write a LeRobot dataset (v2.0, v2.1 or v3.0 layout, parquet + mp4) from in-memory episodes.

Used by the tests, the benchmark, the embedded debug data and the toy world. The layouts follow
LeRobot's on-disk formats (``meta/info.json``, episodes, tasks, stats; see ``datasets/README.md``) so
the files also open with the ``lerobot`` package: a per-frame ``task_index``, ``meta/tasks.parquet``
with the task text as its pandas index (LeRobot reads it with ``tasks.iloc[i].name``), cameras as
``video`` features (mp4) or ``image`` features (PNG ``{"bytes", "path"}`` cells in the parquet), and
depth cameras (``(T, H, W)`` frames) flagged ``video.is_depth_map``.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .stats import feature_stats
from .video import encode_video

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNKS_SIZE = 1000


def _check_episode(i: int, ep: dict[str, Any], cameras: list[str], ds: int, da: int) -> int:
    for key in ("frames", "state", "action", "task"):
        if key not in ep:
            raise ValueError(f"episode {i}: missing key '{key}'")
    length = len(ep["state"])
    if not isinstance(ep["task"], str) and len(ep["task"]) != length:
        raise ValueError(f"episode {i}: {len(ep['task'])} per-frame tasks for {length} frames")
    if sorted(ep["frames"]) != sorted(cameras):
        raise ValueError(f"episode {i}: cameras {sorted(ep['frames'])} differ from episode 0's {sorted(cameras)}")
    for cam, frames in ep["frames"].items():
        if len(frames) != length:
            raise ValueError(f"episode {i}: camera '{cam}' has {len(frames)} frames, state has {length}")
    if np.shape(ep["state"]) != (length, ds) or np.shape(ep["action"]) != (length, da):
        raise ValueError(
            f"episode {i}: state {np.shape(ep['state'])} / action {np.shape(ep['action'])} must be "
            f"({length}, {ds}) / ({length}, {da})"
        )
    return length


def _frame_tasks(ep: dict) -> list[str]:
    """The task of every frame (an episode's ``task`` is one string or one string per frame)."""
    return [ep["task"]] * len(ep["state"]) if isinstance(ep["task"], str) else list(ep["task"])


def _features(episode: dict, image_keys: set[str], keys: tuple[str, str], fps: int, codec: str) -> dict:
    features: dict[str, Any] = {}
    for cam, frames in episode["frames"].items():
        h, w = np.shape(frames)[1:3]
        depth = np.ndim(frames) == 3
        shape, names = ([h, w, 1], ["height", "width", "channels"]) if depth else ([h, w, 3], ["height", "width", "channels"])
        if cam in image_keys:
            features[cam] = {"dtype": "image", "shape": shape, "names": names}
            continue
        features[cam] = {
            "dtype": "video",
            "shape": shape,
            "names": names,
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": {"libx264": "h264", "libx265": "hevc", "libsvtav1": "av1"}.get(codec, codec),
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": depth,
                "video.fps": fps,
                "video.channels": shape[-1],
                "has_audio": False,
            },
        }
    ds, da = np.shape(episode["state"])[1], np.shape(episode["action"])[1]
    features[keys[0]] = {"dtype": "float32", "shape": [ds], "names": [f"s{i}" for i in range(ds)]}
    features[keys[1]] = {"dtype": "float32", "shape": [da], "names": [f"a{i}" for i in range(da)]}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _png_cells(frames: np.ndarray) -> pa.Array:
    """LeRobot's embedded ``image`` cells: ``{"bytes": PNG, "path": None}`` per frame."""
    cells = []
    for frame in np.asarray(frames):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    return pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))


def _frame_table(ep: dict, ep_index: int, start: int, task_indices: list[int], fps: int,
                 image_keys: set[str], keys: tuple[str, str]) -> pa.Table:
    length = len(ep["state"])
    ds, da = np.shape(ep["state"])[1], np.shape(ep["action"])[1]
    state = np.asarray(ep["state"], np.float32).reshape(-1)
    action = np.asarray(ep["action"], np.float32).reshape(-1)
    columns = {cam: _png_cells(ep["frames"][cam]) for cam in ep["frames"] if cam in image_keys}
    columns.update({
        keys[0]: pa.FixedSizeListArray.from_arrays(pa.array(state), ds),
        keys[1]: pa.FixedSizeListArray.from_arrays(pa.array(action), da),
        "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
        "frame_index": pa.array(np.arange(length, dtype=np.int64)),
        "episode_index": pa.array(np.full(length, ep_index, np.int64)),
        "index": pa.array(np.arange(start, start + length, dtype=np.int64)),
        "task_index": pa.array(np.asarray(task_indices, np.int64)),
    })
    return pa.table(columns)


def _write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _write_jsonl(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@dataclass
class _Job:
    root: str
    episodes: list[dict[str, Any]]
    fps: int
    tasks: list[str]
    starts: np.ndarray
    info: dict
    image_keys: set[str]
    keys: tuple[str, str]
    codec: str
    crf: int
    gop: int
    subtasks: list[str] = field(default_factory=list)
    """Distinct per-frame subtask texts (``meta/subtasks.parquet``); empty: no ``subtask_index`` column."""

    @property
    def video_keys(self) -> list[str]:
        return [cam for cam in self.episodes[0]["frames"] if cam not in self.image_keys]

    def task_indices(self, ep: dict) -> list[int]:
        return [self.tasks.index(t) for t in _frame_tasks(ep)]

    def frame_table(self, i: int) -> pa.Table:
        ep = self.episodes[i]
        table = _frame_table(ep, i, int(self.starts[i]), self.task_indices(ep), self.fps, self.image_keys, self.keys)
        if not self.subtasks:
            return table
        return table.append_column("subtask_index", pa.array([self.subtasks.index(t) for t in ep["subtask"]], pa.int64()))

    def encode(self, path: str, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:  # a depth camera: grey in all three channels
            frames = np.repeat(frames[..., None], 3, axis=-1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        encode_video(path, frames, self.fps, self.codec, self.crf, self.gop)

    def episode_stats(self, ep: dict) -> dict:
        return {self.keys[0]: feature_stats(np.asarray(ep["state"], np.float64), quantiles=False),
                self.keys[1]: feature_stats(np.asarray(ep["action"], np.float64), quantiles=False)}


def write_lerobot_dataset(
    root: str,
    episodes: list[dict[str, Any]],
    fps: int,
    version: str = "v3.0",
    robot_type: str = "toy",
    episodes_per_file: int = 1000,
    video_codec: str = "libx264",
    crf: int = 12,
    gop: int = 2,
    image_keys: list[str] | tuple[str, ...] = (),
    state_key: str = "observation.state",
    action_key: str = "action",
) -> str:
    """Write ``episodes`` as a LeRobot dataset at ``root`` and return ``root``.

    Each episode is ``{"frames": {camera_key: uint8 (T, H, W, 3), or (T, H, W) for a depth camera},
    "state": float32 (T, Ds), "action": float32 (T, Da), "task": str or one str per frame}``, optionally
    with ``"subtask"``: one str per frame (LeRobot's ``subtask_index`` + ``meta/subtasks.parquet``). Cameras in
    ``image_keys`` are stored as PNG ``image`` features in the parquet, the others as mp4 (``video_codec``:
    libx264, libx265 (HEVC with B-frames) or libsvtav1). v3.0 concatenates up to ``episodes_per_file``
    episodes into each data parquet and each camera's mp4; v2.x writes one parquet and one mp4 per
    episode (v2.1 with per-episode stats, v2.0 with ``meta/stats.json`` only).
    """
    if version not in ("v2.0", "v2.1", "v3.0"):
        raise ValueError(f"version must be 'v2.0', 'v2.1' or 'v3.0', got {version!r}")
    if not episodes:
        raise ValueError("write_lerobot_dataset needs at least one episode")
    cameras = list(episodes[0]["frames"])
    ds, da = np.shape(episodes[0]["state"])[1], np.shape(episodes[0]["action"])[1]
    lengths = [_check_episode(i, ep, cameras, ds, da) for i, ep in enumerate(episodes)]
    tasks: list[str] = []
    for ep in episodes:
        tasks.extend(t for t in dict.fromkeys(_frame_tasks(ep)) if t not in tasks)
    subtasks = _subtasks(episodes, lengths)
    os.makedirs(root, exist_ok=True)
    info = {
        "codebase_version": version,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": int(sum(lengths)),
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "features": _features(episodes[0], set(image_keys), (state_key, action_key), fps, video_codec),
    }
    if subtasks:
        info["features"]["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
        write_tasks_parquet(os.path.join(root, "meta", "subtasks.parquet"), subtasks, "subtask_index")
    job = _Job(root, episodes, fps, tasks, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int), info,
               set(image_keys), (state_key, action_key), video_codec, crf, gop, subtasks)
    if version == "v3.0":
        _write_v30(job, episodes_per_file)
    else:
        _write_v2(job, per_episode_stats=version == "v2.1")
    all_state = np.concatenate([np.asarray(ep["state"], np.float64) for ep in episodes])
    all_action = np.concatenate([np.asarray(ep["action"], np.float64) for ep in episodes])
    _write_json(os.path.join(root, "meta", "stats.json"),
                {state_key: feature_stats(all_state), action_key: feature_stats(all_action)})
    return root


def _write_v2(job: _Job, per_episode_stats: bool) -> None:
    job.info.update(
        total_chunks=(len(job.episodes) - 1) // CHUNKS_SIZE + 1,
        total_videos=len(job.episodes) * len(job.video_keys),
        data_path=V21_DATA_PATH,
        video_path=V21_VIDEO_PATH if job.video_keys else None,
    )
    for i, ep in enumerate(job.episodes):
        chunk = i // CHUNKS_SIZE
        path = os.path.join(job.root, V21_DATA_PATH.format(episode_chunk=chunk, episode_index=i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(job.frame_table(i), path)
        for cam in job.video_keys:
            job.encode(os.path.join(job.root, V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=cam, episode_index=i)),
                       ep["frames"][cam])
    _write_json(os.path.join(job.root, "meta", "info.json"), job.info)
    _write_jsonl(os.path.join(job.root, "meta", "episodes.jsonl"),
                 [{"episode_index": i, "tasks": list(dict.fromkeys(_frame_tasks(ep))), "length": len(ep["state"])}
                  for i, ep in enumerate(job.episodes)])
    _write_jsonl(os.path.join(job.root, "meta", "tasks.jsonl"),
                 [{"task_index": i, "task": task} for i, task in enumerate(job.tasks)])
    if per_episode_stats:
        _write_jsonl(os.path.join(job.root, "meta", "episodes_stats.jsonl"),
                     [{"episode_index": i, "stats": job.episode_stats(ep)} for i, ep in enumerate(job.episodes)])


def write_tasks_parquet(path: str, tasks: list[str], index_column: str = "task_index") -> None:
    """LeRobot's ``meta/tasks.parquet`` (and ``meta/subtasks.parquet``): column ``task_index``, the task text
    as the pandas index (what ``LeRobotDatasetMetadata.save_episode_tasks`` writes and ``tasks.iloc[i].name``
    reads back)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pd.DataFrame({index_column: np.arange(len(tasks), dtype=np.int64)}, index=list(tasks)).to_parquet(path)


def _subtasks(episodes: list[dict[str, Any]], lengths: list[int]) -> list[str]:
    """Distinct subtask texts in order of appearance; every episode carries one per frame, or none does."""
    carrying = ["subtask" in ep for ep in episodes]
    if any(carrying) and not all(carrying):
        raise ValueError(f"episode {carrying.index(not carrying[0])}: per-frame subtasks must be given for every "
                         "episode or for none")
    texts: dict[str, None] = {}
    for i, (ep, length) in enumerate(zip(episodes, lengths)):
        if "subtask" in ep and len(ep["subtask"]) != length:
            raise ValueError(f"episode {i}: {len(ep['subtask'])} per-frame subtasks for {length} frames")
        texts.update(dict.fromkeys(ep.get("subtask", ())))
    return list(texts)


def _write_v30(job: _Job, per_file: int) -> None:
    episodes = job.episodes
    job.info.update(
        data_files_size_in_mb=100,
        video_files_size_in_mb=200,
        data_path=V30_DATA_PATH,
        video_path=V30_VIDEO_PATH if job.video_keys else None,
    )
    rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                             "data/file_index": [], "dataset_from_index": [], "dataset_to_index": []}
    for cam in job.video_keys:
        for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            rows[f"videos/{cam}/{col}"] = []
    for file_number, first in enumerate(range(0, len(episodes), per_file)):
        chunk, file_index = divmod(file_number, CHUNKS_SIZE)
        group = range(first, min(first + per_file, len(episodes)))
        path = os.path.join(job.root, V30_DATA_PATH.format(chunk_index=chunk, file_index=file_index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.concat_tables([job.frame_table(i) for i in group]), path)
        for cam in job.video_keys:
            job.encode(os.path.join(job.root, V30_VIDEO_PATH.format(video_key=cam, chunk_index=chunk,
                                                                    file_index=file_index)),
                       np.concatenate([np.asarray(episodes[i]["frames"][cam]) for i in group]))
        offset = 0
        for i in group:
            length = len(episodes[i]["state"])
            rows["episode_index"].append(i)
            rows["tasks"].append(list(dict.fromkeys(_frame_tasks(episodes[i]))))
            rows["length"].append(length)
            rows["data/chunk_index"].append(chunk)
            rows["data/file_index"].append(file_index)
            rows["dataset_from_index"].append(int(job.starts[i]))
            rows["dataset_to_index"].append(int(job.starts[i]) + length)
            for cam in job.video_keys:
                rows[f"videos/{cam}/chunk_index"].append(chunk)
                rows[f"videos/{cam}/file_index"].append(file_index)
                rows[f"videos/{cam}/from_timestamp"].append(offset / job.fps)
                rows[f"videos/{cam}/to_timestamp"].append((offset + length) / job.fps)
            offset += length
    per_episode = [job.episode_stats(ep) for ep in episodes]
    for feature in job.keys:
        for stat in ("min", "max", "mean", "std", "count"):
            rows[f"stats/{feature}/{stat}"] = [s[feature][stat] for s in per_episode]
    episodes_path = os.path.join(job.root, "meta", "episodes", "chunk-000", "file-000.parquet")
    os.makedirs(os.path.dirname(episodes_path), exist_ok=True)
    pq.write_table(pa.table(rows), episodes_path)
    write_tasks_parquet(os.path.join(job.root, "meta", "tasks.parquet"), job.tasks)
    _write_json(os.path.join(job.root, "meta", "info.json"), job.info)
