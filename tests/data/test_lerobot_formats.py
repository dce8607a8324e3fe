"""LeRobot datasets laid out as LeRobot 0.6.1 writes them (issue #20): per-frame tasks, image features,
HEVC with B-frames, a depth camera, a 96x128 camera, v2.0 (physical-intelligence/libero), the tasks
parquet, the timestamp tolerance; and the data errors of issue #21 that name the file."""

from __future__ import annotations

import json
import os
import shutil

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.data.helpers import make_config
from torchtitan_vla.data import LeRobotReader, write_lerobot_dataset
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.robot import BadValueError, RobotSampleBuilder, RobotStream
from torchtitan_vla.data.video import FrameTimestampError
from torchtitan_vla.processing.processor import preprocess_images, resize_with_pad

RGB, WRIST, DEPTH = "observation.images.front", "observation.images.wrist", "observation.images.depth"
LENGTH, SWITCH = 40, 30  # the task changes at frame 30 of every episode


def _frames(length: int, h: int, w: int, seed: int) -> np.ndarray:
    """Frames whose index is readable from the pixels (flat colour = index * 5) plus noise-free texture."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    return np.stack([base + np.uint8(i * 5) for i in range(length)])


def _episodes(n: int = 2, length: int = LENGTH) -> list[dict]:
    out = []
    for e in range(n):
        rng = np.random.default_rng(e)
        out.append({
            "frames": {RGB: _frames(length, 96, 128, e), WRIST: _frames(length, 64, 64, 10 + e),
                       DEPTH: _frames(length, 48, 64, 20 + e)[..., 0]},
            "state": rng.normal(size=(length, 6)).astype(np.float32),
            "action": rng.normal(size=(length, 4)).astype(np.float32),
            "task": [f"pick up the block {e}"] * SWITCH + [f"place it in the bin {e}"] * (length - SWITCH),
        })
    return out


@pytest.fixture(scope="module")
def episodes():
    return _episodes()


@pytest.fixture(scope="module")
def roots(tmp_path_factory, episodes):
    """v2.1 and v3.0: an HEVC 96x128 camera with B-frames (GOP 10), a PNG image wrist camera, an HEVC depth camera."""
    base = tmp_path_factory.mktemp("lerobot061")
    kwargs = dict(fps=10, video_codec="libx265", gop=10, crf=0, image_keys=[WRIST])
    return {"v2.1": write_lerobot_dataset(str(base / "v21"), episodes, version="v2.1", **kwargs),
            "v3.0": write_lerobot_dataset(str(base / "v30"), episodes, version="v3.0", **kwargs)}


def _builder(reader, tokenizer, image_size=32, **kwargs):
    cfg = make_config([])
    return RobotSampleBuilder(reader, PromptBuilder(tokenizer, cfg.data), action_horizon=5, max_action_dim=8,
                              max_state_dim=8, image_size=image_size, **kwargs)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_task_is_per_frame(roots, tokenizer, version):
    reader = LeRobotReader(roots[version])
    ep = reader.episodes[1]
    assert [reader.task(ep, f) for f in (0, SWITCH - 1, SWITCH, LENGTH - 1)] == [
        "pick up the block 1", "pick up the block 1", "place it in the bin 1", "place it in the bin 1"]
    builder = _builder(reader, tokenizer)
    fixed = _builder(reader, tokenizer, instruction="place it in the bin 1")
    rng = np.random.default_rng(0)
    assert torch.equal(builder.build(1, SWITCH + 2, 0, rng).input_ids, fixed.build(1, SWITCH + 2, 0, rng).input_ids)
    assert not torch.equal(builder.build(1, 2, 0, rng).input_ids, fixed.build(1, 2, 0, rng).input_ids)


def test_per_frame_language_column(tmp_path, episodes):
    """A string feature (e.g. a subtask annotation) is read per frame, like the task."""
    root = write_lerobot_dataset(str(tmp_path / "ds"), episodes[:1], fps=10, version="v2.1", image_keys=[RGB, WRIST, DEPTH])
    path = os.path.join(root, "data", "chunk-000", "episode_000000.parquet")
    table = pq.read_table(path)
    pq.write_table(table.append_column("language_instruction_2", pa.array([f"step {i}" for i in range(LENGTH)])), path)
    info_path = os.path.join(root, "meta", "info.json")
    info = json.load(open(info_path))
    info["features"]["language_instruction_2"] = {"dtype": "string", "shape": [1], "names": None}
    json.dump(info, open(info_path, "w"))
    reader = LeRobotReader(root)
    assert reader.language["language_instruction_2"][reader.episodes[0].start + 7] == "step 7"


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_image_features_are_cameras_and_depth_is_not_by_default(roots, episodes, version):
    reader = LeRobotReader(roots[version])
    assert reader.camera_keys == [RGB, WRIST]  # dataset order; the depth camera is left out
    ep = reader.episodes[1]
    for frame in (0, 17, LENGTH - 1):
        # PNG cells are lossless: exactly the written pixels.
        np.testing.assert_array_equal(reader.frames(ep, frame)[WRIST], episodes[1]["frames"][WRIST][frame])
    with_depth = LeRobotReader(roots[version], camera_keys=[DEPTH])
    depth = with_depth.frames(with_depth.episodes[1], 5)[DEPTH]
    assert depth.shape == (48, 64, 3) and (depth[..., 0] == depth[..., 1]).all()
    assert np.abs(depth[..., 0].astype(int) - episodes[1]["frames"][DEPTH][5]).mean() < 2


def test_hevc_with_b_frames_random_access_is_frame_accurate(roots):
    reader = LeRobotReader(roots["v3.0"], camera_keys=[RGB])
    path = reader.episodes[0].videos[RGB][0]
    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        assert any(p.pts != p.dts for p in packets), "the file must hold B-frames"
        container.seek(0)
        sequential = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    order = np.random.default_rng(0).permutation(reader.num_frames)
    for index in order:
        episode_pos = int(index >= reader.episodes[1].start)
        ep = reader.episodes[episode_pos]
        frame = int(index - ep.start)
        np.testing.assert_array_equal(reader.frames(ep, frame)[RGB], sequential[index], err_msg=f"frame {index}")


def test_resize_with_padding_keeps_the_aspect_ratio(roots, tokenizer):
    image = np.full((96, 128, 3), 200, np.uint8)
    padded = resize_with_pad(image, (224, 224))
    assert padded.shape == (224, 224, 3)
    assert (padded[:28] == 0).all() and (padded[-28:] == 0).all() and (padded[28:196] == 200).all()
    # The prompt builder (training and serving) uses it by default; stretch stays available.
    pixels, _ = preprocess_images([image], resize_to=(224, 224), resize_mode="pad")
    torch.testing.assert_close(pixels, preprocess_images([padded], resize_to=(224, 224))[0], atol=0, rtol=0)
    assert make_config([]).data.image_resize == "pad"
    stretched, _ = preprocess_images([image], resize_to=(224, 224), resize_mode="stretch")
    assert not torch.equal(stretched, pixels)
    reader = LeRobotReader(roots["v3.0"], camera_keys=[RGB])
    sample = _builder(reader, tokenizer, image_size=64).build(0, 3, 0, np.random.default_rng(0))
    expected, _ = preprocess_images([resize_with_pad(reader.frames(reader.episodes[0], 3)[RGB], (64, 64))],
                                    resize_to=(64, 64))
    torch.testing.assert_close(sample.pixel_values[0], expected, atol=0, rtol=0)


def test_v30_tasks_parquet_has_the_layout_lerobot_reads(roots):
    """LeRobot: ``pd.DataFrame({"task_index": ...}, index=tasks).to_parquet``; ``tasks.iloc[i].name`` is the text."""
    tasks = pd.read_parquet(os.path.join(roots["v3.0"], "meta", "tasks.parquet"))
    assert list(tasks.columns) == ["task_index"] and tasks["task_index"].dtype == np.int64
    assert tasks.iloc[1].name == "place it in the bin 0" and tasks.loc["pick up the block 1", "task_index"] == 2
    episodes = pq.read_table(os.path.join(roots["v3.0"], "meta", "episodes", "chunk-000", "file-000.parquet"))
    assert episodes.column("tasks").to_pylist()[0] == ["pick up the block 0", "place it in the bin 0"]


def _shift_timestamps(root: str, episode: int, frames: slice, offset: float) -> str:
    path = os.path.join(root, "data", "chunk-000", f"episode_{episode:06d}.parquet")
    table = pq.read_table(path)
    stamps = table.column("timestamp").to_numpy().copy()
    stamps[frames] += offset
    index = table.column_names.index("timestamp")
    pq.write_table(table.set_column(index, "timestamp", pa.array(stamps.astype(np.float32))), path)
    return path


def test_timestamp_beyond_tolerance_names_file_episode_and_timestamp(tmp_path, roots):
    root = str(tmp_path / "shifted")
    shutil.copytree(roots["v2.1"], root)
    path = _shift_timestamps(root, 1, slice(5, 6), 0.06)
    with pytest.raises(ValueError, match=rf"{path}: episode 1 frame 5 has timestamp 0\.56"):
        LeRobotReader(root)
    # A configured, looser tolerance accepts it (data.timestamp_tolerance_s).
    reader = LeRobotReader(root, tolerance_s=0.07, camera_keys=[RGB])
    assert reader.frames(reader.episodes[1], 5)[RGB].shape == (96, 128, 3)
    assert make_config([]).data.timestamp_tolerance_s == 1e-4


def test_video_offset_beyond_tolerance_is_refused(tmp_path, roots):
    """v3.0: an episode's from_timestamp off by 0.06 s: no frame is decoded from the neighbouring time."""
    root = str(tmp_path / "offset")
    shutil.copytree(roots["v3.0"], root)
    path = os.path.join(root, "meta", "episodes", "chunk-000", "file-000.parquet")
    table = pq.read_table(path)
    col = f"videos/{RGB}/from_timestamp"
    values = [v + 0.06 for v in table.column(col).to_pylist()]
    pq.write_table(table.set_column(table.column_names.index(col), col, pa.array(values)), path)
    reader = LeRobotReader(root, camera_keys=[RGB])
    for frame in range(0, LENGTH - 1, 3):
        with pytest.raises(FrameTimestampError, match="episode 1 frame"):
            reader.frames(reader.episodes[1], frame)


def test_v20_libero_layout_reads_like_v21(tmp_path):
    """physical-intelligence/libero: v2.0, image features in parquet, keys ``state``/``actions``, fps 10."""
    eps = []
    for e in range(2):
        rng = np.random.default_rng(e)
        eps.append({"frames": {"image": _frames(12, 32, 32, e), "wrist_image": _frames(12, 32, 32, 5 + e)},
                    "state": rng.normal(size=(12, 8)).astype(np.float32),
                    "action": rng.normal(size=(12, 7)).astype(np.float32), "task": f"task {e}"})
    kwargs = dict(fps=10, image_keys=["image", "wrist_image"], state_key="state", action_key="actions")
    v20 = write_lerobot_dataset(str(tmp_path / "v20"), eps, version="v2.0", **kwargs)
    v21 = write_lerobot_dataset(str(tmp_path / "v21"), eps, version="v2.1", **kwargs)
    assert not os.path.exists(os.path.join(v20, "meta", "episodes_stats.jsonl"))
    a, b = (LeRobotReader(root, state_key="state", action_key="actions") for root in (v20, v21))
    assert a.version == "v2.0" and a.camera_keys == ["image", "wrist_image"] and a.fps == 10
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.action, b.action)
    for ep_a, ep_b in zip(a.episodes, b.episodes):
        assert ep_a.task == ep_b.task
        for cam in a.camera_keys:
            np.testing.assert_array_equal(a.frames(ep_a, 4)[cam], b.frames(ep_b, 4)[cam])
    stats = a.stats()
    np.testing.assert_allclose(stats["actions"]["mean"], np.concatenate([e["action"] for e in eps]).mean(0), rtol=1e-5)


def test_compute_norm_stats_on_an_image_feature_dataset(tmp_path):
    from scripts.compute_norm_stats import compute

    eps = [{"frames": {"image": _frames(6, 16, 16, 0)}, "state": np.ones((6, 2), np.float32),
            "action": np.arange(6, dtype=np.float32)[:, None], "task": "t"}]
    root = write_lerobot_dataset(str(tmp_path / "img"), eps, fps=10, version="v3.0", image_keys=["image"])
    assert LeRobotReader(root).camera_keys == ["image"]
    stats = compute(root, "observation.state", "action", None, 0)
    assert stats["action"]["mean"] == [2.5]


def _with_nan(tmp_path, roots) -> str:
    root = str(tmp_path / "nan")
    shutil.copytree(roots["v2.1"], root)
    path = os.path.join(root, "data", "chunk-000", "episode_000001.parquet")
    table = pq.read_table(path)
    state = np.asarray(table.column("observation.state").to_pylist(), np.float32)
    state[12, 2] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), 6)
    pq.write_table(table.set_column(table.column_names.index("observation.state"), "observation.state", column), path)
    return root


def test_non_finite_state_names_file_episode_and_frame_or_is_skipped(tmp_path, roots, tokenizer):
    root = _with_nan(tmp_path, roots)
    builder = _builder(LeRobotReader(root, camera_keys=[WRIST]), tokenizer, normalization="none")
    with pytest.raises(BadValueError, match=r"episode_000001\.parquet: episode 1 frame 12: non-finite 'observation.state'"):
        builder.build(1, 12, 0, np.random.default_rng(0))
    stream = RobotStream(builder, 0, "robot", seed=0, stream_id=0, num_streams=1, strict=False)
    for _ in range(2 * LENGTH - 1):
        stream.next(np.random.default_rng(0))
    assert stream.skipped == 1
    strict = RobotStream(builder, 0, "robot", seed=0, stream_id=0, num_streams=1, strict=True)
    with pytest.raises(BadValueError, match="frame 12"):
        for _ in range(2 * LENGTH):
            strict.next(np.random.default_rng(0))


def test_truncated_parquet_and_missing_fps_name_the_file(tmp_path, roots):
    root = str(tmp_path / "bad")
    shutil.copytree(roots["v2.1"], root)
    path = os.path.join(root, "data", "chunk-000", "episode_000001.parquet")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"^{path}: unreadable parquet file"):
        LeRobotReader(root)
    info_path = os.path.join(root, "meta", "info.json")
    info = json.load(open(info_path))
    del info["fps"]
    json.dump(info, open(info_path, "w"))
    with pytest.raises(ValueError, match=rf"^{info_path}: missing key 'fps'"):
        LeRobotReader(root)


def test_v30_without_stats_json_names_it(tmp_path, roots):
    root = str(tmp_path / "nostats")
    shutil.copytree(roots["v3.0"], root)
    os.remove(os.path.join(root, "meta", "stats.json"))
    with pytest.raises(FileNotFoundError, match=r"meta/stats\.json"):
        LeRobotReader(root).stats()


def test_config_accepts_image_feature_cameras(tmp_path):
    from torchtitan_vla.config.validate import load_stages

    eps = [{"frames": {"image": _frames(6, 16, 16, 0), "depth": _frames(6, 16, 16, 1)[..., 0]},
            "state": np.ones((6, 2), np.float32), "action": np.ones((6, 2), np.float32), "task": "t"}]
    root = write_lerobot_dataset(str(tmp_path / "img"), eps, fps=10, version="v2.0", image_keys=["image"])
    config = tmp_path / "job.toml"
    config.write_text(f'[[data.sources]]\nname = "robot"\nkind = "lerobot"\npath = "{root}"\n'
                      'camera_keys = ["image"]\nwrist_camera_keys = ["image"]\n')
    _, stages = load_stages(str(config))
    assert stages[0].config.data.sources[0].camera_keys == ["image"]


def test_serving_reads_image_feature_cameras_and_pads_like_training(tmp_path, tokenizer):
    """An export from an image-feature dataset: the policy's camera is that feature, and a served 96x128
    frame becomes exactly the pixels training built from the same frame (one resize function)."""
    from torchtitan_vla.serve.policy import Policy
    from torchtitan_vla.tools.debug_policy import export_debug_policy

    eps = [{"frames": {"image": _frames(6, 96, 128, e), "depth": _frames(6, 96, 128, 3)[..., 0]},
            "state": np.random.default_rng(e).normal(size=(6, 3)).astype(np.float32),
            "action": np.random.default_rng(e).normal(size=(6, 2)).astype(np.float32), "task": "t"} for e in range(2)]
    root = write_lerobot_dataset(str(tmp_path / "ds"), eps, fps=10, version="v2.0", image_keys=["image"])
    reader = LeRobotReader(root)
    assert reader.camera_keys == ["image"]
    export = export_debug_policy(tmp_path, ["image"], state_dim=3, action_dim=2, dataset=root)
    policy = Policy.from_export(export)
    assert policy.camera_keys == ["image"] and policy.cfg.data.image_resize == "pad"
    frame = reader.frames(reader.episodes[0], 2)["image"]
    batch = policy.make_batch({"observation/image": frame, "observation/state": np.zeros(3, np.float32), "prompt": "t"})
    trained = _builder(reader, tokenizer, image_size=policy.cfg.data.image_size, normalization="none").build(
        0, 2, 0, np.random.default_rng(0))
    torch.testing.assert_close(batch.pixel_values, trained.pixel_values[0], atol=0, rtol=0)


@pytest.mark.parametrize("codec", ["libx264", "libsvtav1"])
def test_random_access_is_frame_accurate_for_h264_and_av1(tmp_path, codec):
    eps = [{"frames": {RGB: _frames(30, 64, 96, e)}, "state": np.zeros((30, 2), np.float32),
            "action": np.zeros((30, 2), np.float32), "task": "t"} for e in range(2)]
    root = write_lerobot_dataset(str(tmp_path / codec), eps, fps=10, version="v3.0", video_codec=codec, gop=10)
    reader = LeRobotReader(root)
    with av.open(reader.episodes[0].videos[RGB][0]) as container:
        sequential = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    for index in np.random.default_rng(1).permutation(60):
        ep = reader.episodes[int(index >= 30)]
        np.testing.assert_array_equal(reader.frames(ep, int(index - ep.start))[RGB], sequential[index])
