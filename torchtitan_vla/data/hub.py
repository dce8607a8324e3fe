"""Hugging Face hub repo ids as paths: ``model.hf_assets_path = "Qwen/Qwen3-VL-2B-Instruct"`` or a
LeRobot source's ``path = "lerobot/libero"`` resolve to the snapshot folder in the hub's cache.

The download goes through ``huggingface_hub.snapshot_download`` (revision pinnable) under a file lock
in the cache, so on a node the first process downloads and the others wait and find it cached; offline
(``HF_HUB_OFFLINE=1``) a cached snapshot is used. Any failure is one line naming the repo id and the
command that pre-downloads it.
"""

from __future__ import annotations

import os
import re

from filelock import FileLock

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


class HubError(RuntimeError):
    """A repo id that cannot be resolved (offline and not cached, unknown repo or revision, network)."""


def is_repo_id(path: str) -> bool:
    """``owner/name`` that is not a local path (an existing file or folder always wins)."""
    return bool(path) and not os.path.exists(path) and bool(_REPO_ID.match(path)) and ".." not in path


def download_command(repo_id: str, repo_type: str, revision: str) -> str:
    command = f"huggingface-cli download {repo_id}"
    if repo_type != "model":
        command += f" --repo-type {repo_type}"
    if revision:
        command += f" --revision {revision}"
    return command


def resolve_repo(repo_id: str, repo_type: str = "model", revision: str = "") -> str:
    """Local snapshot folder of ``repo_id`` (``repo_type`` ``model`` or ``dataset``) at ``revision``."""
    from huggingface_hub import constants, snapshot_download

    os.makedirs(constants.HF_HUB_CACHE, exist_ok=True)
    lock = os.path.join(constants.HF_HUB_CACHE, f".torchtitan_vla--{repo_type}--{repo_id.replace('/', '--')}.lock")
    try:
        with FileLock(lock):
            return snapshot_download(repo_id, repo_type=repo_type, revision=revision or None)
    except Exception as err:  # noqa: BLE001 - every hub failure becomes the same actionable line
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        offline = " (offline: HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else ""
        raise HubError(f"'{repo_id}' is not a local path, and as a hub repo id{offline} it cannot be resolved: {type(err).__name__}: {reason}; "
                       f"pre-download it with `{download_command(repo_id, repo_type, revision)}`") from None


def resolve_hub_paths(cfg) -> list[tuple[str, str]]:
    """Replace repo ids in ``cfg.model.hf_assets_path`` and LeRobot sources' ``path`` by their snapshot
    folders; returns ``(key, problem)`` of the first failure, else an empty list."""
    targets = [("model.hf_assets_path", cfg.model, "hf_assets_path", "model", cfg.model.hf_revision)]
    targets += [(f"data.sources[{i}].path", src, "path", "dataset", src.revision)
                for i, src in enumerate(cfg.data.sources) if src.kind == "lerobot"]
    for key, owner, attr, repo_type, revision in targets:
        value = getattr(owner, attr)
        if not is_repo_id(value):
            continue
        try:
            setattr(owner, attr, resolve_repo(value, repo_type, revision))
        except HubError as err:
            return [(key, str(err))]
    return []
