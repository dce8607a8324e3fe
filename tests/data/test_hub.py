"""Hub repo ids as paths (issue #20 point 9), offline only: a local cache laid out as the hub's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from torchtitan_vla.config import JobConfig
from torchtitan_vla.config.data import DataSource
from torchtitan_vla.data.hub import is_repo_id, resolve_hub_paths

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cached_repo(cache, repo_type: str, repo_id: str, files: dict[str, str], ref: str = "main"):
    """The hub cache layout: <type>s--owner--name/{refs/<ref>, snapshots/<commit>/<files>}."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / ref).write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    return snapshot


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_repo_ids_resolve_to_cached_snapshots(offline_cache):
    model = _cached_repo(offline_cache, "model", "Qwen/Qwen3-VL-2B-Instruct", {"config.json": "{}"})
    dataset = _cached_repo(offline_cache, "dataset", "lerobot/libero", {"meta/info.json": "{}"}, ref="v2.0")
    cfg = JobConfig()
    cfg.model.hf_assets_path = "Qwen/Qwen3-VL-2B-Instruct"
    cfg.data.sources = [DataSource(name="libero", kind="lerobot", path="lerobot/libero", revision="v2.0")]
    assert resolve_hub_paths(cfg) == []
    assert cfg.model.hf_assets_path == str(model) and cfg.data.sources[0].path == str(dataset)


def test_uncached_repo_offline_is_one_line_naming_it_and_the_command(offline_cache):
    cfg = JobConfig()
    cfg.data.sources = [DataSource(name="libero", kind="lerobot", path="lerobot/libero", revision="v2.0")]
    [(key, problem)] = resolve_hub_paths(cfg)
    assert key == "data.sources[0].path" and "\n" not in problem
    assert "'lerobot/libero'" in problem
    assert "`huggingface-cli download lerobot/libero --repo-type dataset --revision v2.0`" in problem


def test_local_paths_are_not_repo_ids(tmp_path):
    (tmp_path / "a").mkdir()
    assert not is_repo_id(str(tmp_path / "a")) and not is_repo_id("/abs/path") and not is_repo_id("a/b/c")
    assert is_repo_id("lerobot/libero")


def test_train_refuses_an_uncached_repo_id_with_exit_2(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), PYTHONPATH=ROOT)
    config = tmp_path / "job.toml"
    config.write_text('[model]\nhf_assets_path = "Qwen/Qwen3-VL-2B-Instruct"\n')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config", str(config), "--print-config"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "huggingface-cli download Qwen/Qwen3-VL-2B-Instruct" in lines[0], proc.stderr[-2000:]
