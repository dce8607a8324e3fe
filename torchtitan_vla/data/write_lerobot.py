"""Write a LeRobot dataset (v2.1 or v3.0 layout, parquet + mp4) from in-memory episodes.

Used by the tests, the benchmark, the embedded debug data and the toy world. The layouts follow
LeRobot's on-disk formats (``meta/info.json``, episodes, tasks, stats; see ``datasets/README.md``) so
the files also open with the ``lerobot`` package.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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


def _features(cameras: list[str], shapes: dict[str, tuple], ds: int, da: int, fps: int, codec: str) -> dict:
    features: dict[str, Any] = {}
    for cam in cameras:
        h, w = shapes[cam]
        features[cam] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": "h264" if codec == "libx264" else codec,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    features["observation.state"] = {"dtype": "float32", "shape": [ds], "names": [f"s{i}" for i in range(ds)]}
    features["action"] = {"dtype": "float32", "shape": [da], "names": [f"a{i}" for i in range(da)]}
    for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                        ("index", "int64"), ("task_index", "int64")):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _frame_table(ep: dict, ep_index: int, start: int, task_index: int, fps: int) -> pa.Table:
    length = len(ep["state"])
    ds, da = np.shape(ep["state"])[1], np.shape(ep["action"])[1]
    state = np.asarray(ep["state"], np.float32).reshape(-1)
    action = np.asarray(ep["action"], np.float32).reshape(-1)
    return pa.table({
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state), ds),
        "action": pa.FixedSizeListArray.from_arrays(pa.array(action), da),
        "timestamp": pa.array(np.arange(length, dtype=np.float32) / fps),
        "frame_index": pa.array(np.arange(length, dtype=np.int64)),
        "episode_index": pa.array(np.full(length, ep_index, np.int64)),
        "index": pa.array(np.arange(start, start + length, dtype=np.int64)),
        "task_index": pa.array(np.full(length, task_index, np.int64)),
    })


def _write_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _write_jsonl(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


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
) -> str:
    """Write ``episodes`` as a LeRobot dataset at ``root`` and return ``root``.

    Each episode is ``{"frames": {camera_key: uint8 (T, H, W, 3)}, "state": float32 (T, Ds),
    "action": float32 (T, Da), "task": str}``. v3.0 concatenates up to ``episodes_per_file`` episodes
    into each data parquet and each camera's mp4; v2.1 writes one parquet and one mp4 per episode.
    """
    if version not in ("v2.1", "v3.0"):
        raise ValueError(f"version must be 'v2.1' or 'v3.0', got {version!r}")
    if not episodes:
        raise ValueError("write_lerobot_dataset needs at least one episode")
    cameras = list(episodes[0]["frames"])
    ds, da = np.shape(episodes[0]["state"])[1], np.shape(episodes[0]["action"])[1]
    lengths = [_check_episode(i, ep, cameras, ds, da) for i, ep in enumerate(episodes)]
    shapes = {cam: tuple(np.shape(episodes[0]["frames"][cam])[1:3]) for cam in cameras}
    tasks: list[str] = []
    for ep in episodes:
        if ep["task"] not in tasks:
            tasks.append(ep["task"])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
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
        "features": _features(cameras, shapes, ds, da, fps, video_codec),
    }
    per_episode_stats = [
        {"observation.state": feature_stats(np.asarray(ep["state"], np.float64), quantiles=False),
         "action": feature_stats(np.asarray(ep["action"], np.float64), quantiles=False)}
        for ep in episodes
    ]
    if version == "v2.1":
        _write_v21(root, episodes, fps, tasks, starts, info, per_episode_stats, video_codec, crf, gop)
    else:
        _write_v30(root, episodes, fps, tasks, starts, info, per_episode_stats, episodes_per_file,
                   video_codec, crf, gop)
    all_state = np.concatenate([np.asarray(ep["state"], np.float64) for ep in episodes])
    all_action = np.concatenate([np.asarray(ep["action"], np.float64) for ep in episodes])
    _write_json(os.path.join(root, "meta", "stats.json"),
                {"observation.state": feature_stats(all_state), "action": feature_stats(all_action)})
    return root


def _write_v21(root, episodes, fps, tasks, starts, info, per_episode_stats, codec, crf, gop) -> None:
    cameras = list(episodes[0]["frames"])
    info.update(
        total_chunks=(len(episodes) - 1) // CHUNKS_SIZE + 1,
        total_videos=len(episodes) * len(cameras),
        data_path=V21_DATA_PATH,
        video_path=V21_VIDEO_PATH,
    )
    for i, ep in enumerate(episodes):
        chunk = i // CHUNKS_SIZE
        path = os.path.join(root, V21_DATA_PATH.format(episode_chunk=chunk, episode_index=i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(_frame_table(ep, i, int(starts[i]), tasks.index(ep["task"]), fps), path)
        for cam in cameras:
            vpath = os.path.join(root, V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=cam, episode_index=i))
            os.makedirs(os.path.dirname(vpath), exist_ok=True)
            encode_video(vpath, np.asarray(ep["frames"][cam]), fps, codec, crf, gop)
    _write_json(os.path.join(root, "meta", "info.json"), info)
    _write_jsonl(os.path.join(root, "meta", "episodes.jsonl"),
                 [{"episode_index": i, "tasks": [ep["task"]], "length": len(ep["state"])}
                  for i, ep in enumerate(episodes)])
    _write_jsonl(os.path.join(root, "meta", "tasks.jsonl"),
                 [{"task_index": i, "task": task} for i, task in enumerate(tasks)])
    _write_jsonl(os.path.join(root, "meta", "episodes_stats.jsonl"),
                 [{"episode_index": i, "stats": stats} for i, stats in enumerate(per_episode_stats)])


def _write_v30(root, episodes, fps, tasks, starts, info, per_episode_stats, per_file, codec, crf, gop) -> None:
    cameras = list(episodes[0]["frames"])
    info.update(
        data_files_size_in_mb=100,
        video_files_size_in_mb=200,
        data_path=V30_DATA_PATH,
        video_path=V30_VIDEO_PATH,
    )
    rows: dict[str, list] = {"episode_index": [], "tasks": [], "length": [], "data/chunk_index": [],
                             "data/file_index": [], "dataset_from_index": [], "dataset_to_index": []}
    for cam in cameras:
        for col in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            rows[f"videos/{cam}/{col}"] = []
    for file_number, first in enumerate(range(0, len(episodes), per_file)):
        chunk, file_index = divmod(file_number, CHUNKS_SIZE)
        group = range(first, min(first + per_file, len(episodes)))
        tables = [_frame_table(episodes[i], i, int(starts[i]), tasks.index(episodes[i]["task"]), fps) for i in group]
        path = os.path.join(root, V30_DATA_PATH.format(chunk_index=chunk, file_index=file_index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        for cam in cameras:
            vpath = os.path.join(root, V30_VIDEO_PATH.format(video_key=cam, chunk_index=chunk, file_index=file_index))
            os.makedirs(os.path.dirname(vpath), exist_ok=True)
            encode_video(vpath, np.concatenate([np.asarray(episodes[i]["frames"][cam]) for i in group]),
                         fps, codec, crf, gop)
        offset = 0
        for i in group:
            length = len(episodes[i]["state"])
            rows["episode_index"].append(i)
            rows["tasks"].append([episodes[i]["task"]])
            rows["length"].append(length)
            rows["data/chunk_index"].append(chunk)
            rows["data/file_index"].append(file_index)
            rows["dataset_from_index"].append(int(starts[i]))
            rows["dataset_to_index"].append(int(starts[i]) + length)
            for cam in cameras:
                rows[f"videos/{cam}/chunk_index"].append(chunk)
                rows[f"videos/{cam}/file_index"].append(file_index)
                rows[f"videos/{cam}/from_timestamp"].append(offset / fps)
                rows[f"videos/{cam}/to_timestamp"].append((offset + length) / fps)
            offset += length
    for feature in ("observation.state", "action"):
        for stat in ("min", "max", "mean", "std", "count"):
            rows[f"stats/{feature}/{stat}"] = [s[feature][stat] for s in per_episode_stats]
    episodes_path = os.path.join(root, "meta", "episodes", "chunk-000", "file-000.parquet")
    os.makedirs(os.path.dirname(episodes_path), exist_ok=True)
    pq.write_table(pa.table(rows), episodes_path)
    pq.write_table(pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks}),
                   os.path.join(root, "meta", "tasks.parquet"))
    _write_json(os.path.join(root, "meta", "info.json"), info)
