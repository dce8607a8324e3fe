"""Scripted LIBERO demonstrations as LeRobot datasets in both public layouts: read back through the project's
reader, replayed open-loop in a fresh environment, resumed without redoing episodes, and accepted by the
LIBERO training configs.

The ``datasets`` fixture simulates a real scripted episode (a minute on a quiet 2-core machine, far more on a
busy one): the tests using it are ``slow``. Their CI siblings use ``staged``, a staged episode of the right
shapes written without the simulator, through the same writer, reader and config checks."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.envs.libero.helpers import require_libero

require_libero()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:robosuite")

from torchtitan_vla.config import load_stages  # noqa: E402
from torchtitan_vla.data.lerobot import LeRobotReader  # noqa: E402
from torchtitan_vla.envs.libero import env as E  # noqa: E402
from torchtitan_vla.envs.libero import generate as G  # noqa: E402

TASK = "pick up the alphabet soup and place it in the basket"


def _write_layouts(root) -> dict[str, str]:
    paths = {}
    for layout in G.LAYOUTS:
        if layout != "openpi":
            shutil.copytree(root / "openpi" / G.STAGING, root / layout / G.STAGING)
        paths[layout] = str(root / layout)
        G.write_dataset(paths[layout], layout, "libero_object", [(0, 0)])
    return paths


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A staged episode (task 0, init state 0) with the generator's shapes and dtypes, written in both layouts."""
    root = tmp_path_factory.mktemp("libero_staged")
    stem = G._staged(str(root / "openpi"), "libero_object", 0, 0)
    os.makedirs(os.path.dirname(stem))
    rng = np.random.default_rng(0)
    length = 12
    state = np.tile(np.array([0.0, 0.0, 0.2, np.pi, 0.0, 0.0, 0.04, -0.04], np.float32), (length, 1))
    action = np.clip(rng.normal(size=(length, 7)), -1, 1).astype(np.float32)
    action[:, 6] = np.where(np.arange(length) < 6, -1.0, 1.0)
    # Smooth gradients (the mp4 layout is lossy: noise would not survive it).
    yy, xx = np.mgrid[:32, :32]
    frames = np.stack([np.stack([xx * 3 + t, yy * 3 + t, xx + yy + 2 * t], -1) for t in range(length)])
    images = np.stack([frames, 200 - frames]).astype(np.uint8)
    np.savez_compressed(stem + ".npz", image=images[0], wrist_image=images[1], state=state, action=action)
    with open(stem + ".json", "w") as f:
        json.dump({"suite": "libero_object", "task_id": 0, "init_state": 0, "seed": 0, "task": TASK,
                   "success": True, "image_size": 32, "wait_steps": E.NUM_WAIT_STEPS}, f)
    return _write_layouts(root)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """One scripted LIBERO-Object episode (task 0, init state 0, 32x32 images) in the openpi layout, and the
    same staged episode written in the LeRobot layout."""
    root = tmp_path_factory.mktemp("libero")
    openpi = str(root / "openpi")
    report = G.generate(openpi, "openpi", "libero_object", tasks="0", init_states="0", image_size=32, progress=False)
    assert report == {"attempted": 1, "kept": 1, "per_task": {"0": "1/1"}}
    return _write_layouts(root)


def check_layout(root: str, layout: str) -> LeRobotReader:
    """The public dataset's format version, feature names, shapes, dtypes and fps, read back by our reader."""
    spec = G.LAYOUTS[layout]
    info = json.loads(open(f"{root}/meta/info.json").read())
    assert info["codebase_version"] == spec.version and info["fps"] == E.DATASET_FPS == 10
    assert info["robot_type"] == "panda"
    features = info["features"]
    assert features[spec.state]["shape"] == [8] and features[spec.action]["shape"] == [7]
    assert features[spec.image]["shape"] == [32, 32, 3]
    assert features[spec.image]["dtype"] == ("video" if spec.images_as_video else "image")

    reader = LeRobotReader(root, state_key=spec.state, action_key=spec.action)
    assert reader.camera_keys == [spec.image, spec.wrist_image]
    episode = reader.episodes[0]
    assert episode.task == TASK and len(reader.episodes) == 1
    actions = reader.action[: episode.length]
    assert actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
    assert set(np.unique(actions[:, 6])) <= {-1.0, 1.0} and actions[0, 6] == -1.0 and (actions[:, 6] == 1).any()
    frames = reader.frames(episode, 0)
    assert frames[spec.image].shape == (32, 32, 3) and frames[spec.image].dtype == np.uint8
    # The first frame's state is the hand after the wait steps: pointing down (axis-angle ~pi).
    assert abs(np.linalg.norm(reader.state[0, 3:6]) - np.pi) < 0.2
    if layout == "openpi":
        assert open(f"{root}/meta/tasks.jsonl").read().strip() == json.dumps({"task_index": 0, "task": TASK})
        assert all(os.path.isfile(f"{root}/meta/{name}") for name in ("episodes.jsonl", "stats.json"))
    assert os.path.isfile(f"{root}/tokenizer.json")
    return reader


@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_layouts_read_back(staged, layout):
    reader = check_layout(staged[layout], layout)
    # Images survive the layout: PNG exactly, mp4 approximately.
    stored = np.load(G._staged(staged["openpi"], "libero_object", 0, 0) + ".npz")["image"][3]
    frame = reader.frames(reader.episodes[0], 3)[G.LAYOUTS[layout].image].astype(int)
    assert np.abs(frame - stored).mean() < (0.5 if layout == "openpi" else 6)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_generated_layouts_read_back(datasets, layout):
    check_layout(datasets[layout], layout)


@pytest.mark.slow
def test_frames_are_the_environment_view(datasets):
    """The stored first frame is the env's rendered (rotated) view after the wait steps."""
    env = E.LiberoEnv("libero_object", 0, image_size=32)
    env.reset(0, render=False)
    for _ in range(E.NUM_WAIT_STEPS):
        env.step(E.NOOP_ACTION, render=False)
    image, wrist = env.render()
    env.close()
    reader = LeRobotReader(datasets["openpi"], state_key="state", action_key="actions")
    frames = reader.frames(reader.episodes[0], 0)
    np.testing.assert_array_equal(frames["image"], image)
    np.testing.assert_array_equal(frames["wrist_image"], wrist)


@pytest.mark.slow
def test_replay_check(datasets):
    assert G.replay_dataset(datasets["lerobot"], progress=False) == {"episodes": 1, "succeeded": 1, "failed": []}


def test_rerun_skips_finished_episodes(staged, monkeypatch):
    def no_env(*args, **kwargs):
        raise AssertionError("a finished episode was simulated again")

    monkeypatch.setattr(G, "LiberoEnv", no_env)
    report = G.generate(staged["openpi"], "openpi", "libero_object", tasks="0", init_states="0", progress=False)
    assert report == {"attempted": 1, "kept": 1, "per_task": {"0": "1/1"}}


def test_bad_task_and_layout_are_named(tmp_path, capsys):
    assert G.main(["--out", str(tmp_path), "--tasks", "3-12"]) == 2
    assert capsys.readouterr().err.strip() == "error: libero_object task id 10 out of range (0-9)"
    assert G.main(["--out", str(tmp_path), "--suite", "libero_100"]) == 2
    assert "unknown LIBERO suite 'libero_100'" in capsys.readouterr().err


@pytest.mark.parametrize("config, layout", [("pi05_libero.toml", "openpi"), ("pi05_libero_lerobot.toml", "lerobot"),
                                            ("cpu_object.toml", "openpi")])
def test_training_configs_accept_the_layout(staged, tmp_path, config, layout):
    """Each LIBERO config validates (paths, feature names and widths) against a dataset of its layout."""
    text = open(f"train_configs/libero/{config}").read()
    hf = tmp_path / "qwen3vl"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    for placeholder in ("physical-intelligence/libero", "HuggingFaceVLA/libero", "outputs/libero/demos_object"):
        text = text.replace(f'path = "{placeholder}"', f'path = "{staged[layout]}"')
    text = text.replace('"Qwen/Qwen3-VL-2B-Instruct"', f'"{hf}"')
    text = text.replace('"outputs/libero/demos_object/tokenizer.json"', f'"{staged[layout]}/tokenizer.json"')
    path = tmp_path / config
    path.write_text(text)
    _, stages = load_stages(str(path))
    source = stages[0].config.data.sources[0]
    assert source.path == staged[layout] and len(stages) == 1
