"""Atomic DCP checkpoints: save, keep-latest-k, find the newest complete one, load.

A checkpoint is written into ``step-N.tmp`` by all ranks (torch.distributed.checkpoint), then rank 0
writes ``COMPLETE.json`` (the size of every file) and renames the folder to ``step-N``. A folder
without the marker, or whose files no longer match it (a truncated copy), is never loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from torchtitan_vla.config.checkpoint import Checkpoint as CheckpointConfig
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.checksums import first_mismatch, folder_crc32
from torchtitan_vla.utils.logging import logger

from .disk import DiskFullError, is_disk_full

MARKER = "COMPLETE.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


class ModelState:
    """The model as DCP sees it: FQN-keyed, sharding-aware, wrapper prefixes (compile, AC) removed."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state, options=StateDictOptions(strict=True))


class OptimizerState:
    """The optimizer flattened to parameter FQNs, so it reloads under any wrapping."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model = model
        self.optimizer = optimizer
        self.partial = False
        """Set when the checkpoint being loaded lacks some parameters' state (they start fresh)."""

    def state_dict(self) -> dict[str, Any]:
        init_missing_adamw_state(self.optimizer)
        return get_optimizer_state_dict(self.model, self.optimizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(strict=not self.partial))


def init_missing_adamw_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter without state the state AdamW creates at its first gradient.

    AdamW creates state lazily, so a component that has had no gradient yet (an expert whose first steps
    saw no robot sample) would be absent from a checkpoint while the loading side expects it. Initialised
    here, every save holds every trainable parameter and stepping on is unchanged (same zeros, step 0).
    (Without any state, DCP's loader would take a zero-gradient step instead, leaving step = 1.)
    """
    for group in optimizer.param_groups:
        on_device = group.get("fused") or group.get("capturable")
        for p in group["params"]:
            if optimizer.state.get(p):
                continue
            state = optimizer.state[p]
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if on_device
                             else torch.tensor(0.0, dtype=torch.float32))
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


@dataclass
class CheckpointInfo:
    step: int
    path: Path
    meta: dict


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER
    }


def check_complete(path: Path, verify_checksums: bool = True) -> str | None:
    """``None`` if ``path`` is a complete checkpoint, else the reason it is not (naming the file).

    Sizes are always compared with the marker; ``verify_checksums`` also reads every file and compares its
    CRC-32 (flipped bytes, a zeroed shard), as every load does.
    """
    marker = path / MARKER
    if not path.is_dir():
        return "no such folder"
    if not marker.is_file():
        return f"no {MARKER} (the save did not finish)"
    try:
        meta = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"unreadable {marker}: {e}"
    if not isinstance(meta, dict) or not isinstance(meta.get("files", {}), dict):
        return f"unreadable {marker}: not a checkpoint marker"
    actual = _file_sizes(path)
    for name, size in meta.get("files", {}).items():
        if name not in actual:
            return f"file {name} is missing"
        if actual[name] != size:
            return f"file {name} has {actual[name]} bytes, {size} were written (truncated copy?)"
    if verify_checksums:
        return first_mismatch(path, meta.get("crc32", {}))
    return None


def read_meta(path: Path) -> dict:
    return json.loads((path / MARKER).read_text())


class CheckpointManager:
    """Saves and finds the checkpoints of one run folder (``<run>/<checkpoint.folder>``)."""

    def __init__(self, folder: str | Path, cfg: CheckpointConfig):
        self.folder = Path(folder)
        self.cfg = cfg
        self._pending: tuple[Future, int, Path, dict] | None = None
        self.states: dict[str, Any] = {}
        # Async saves run their collectives on a separate gloo group, so they never interleave with
        # the training collectives of the default group (NCCL on GPUs).
        self._async_group = (
            dist.new_group(backend="gloo") if cfg.async_mode == "async" and dist.is_initialized() else None
        )
        if dist_utils.rank() == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob("step-*.tmp"):
                logger.warning(f"removing the unfinished checkpoint {stale}")
                shutil.rmtree(stale, ignore_errors=True)
        dist_utils.barrier()

    def step_folders(self) -> list[tuple[int, Path]]:
        """Finished (renamed) checkpoint folders, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _STEP_DIR.match(p.name))]
        return sorted(found)

    def find_resume(self, load_step: int = -1, skip: frozenset[int] = frozenset()) -> CheckpointInfo | None:
        """The checkpoint to resume from: ``load_step``'s, or the newest complete one not in ``skip`` (or None).

        Rank 0 decides and broadcasts, so every rank loads the same one.
        """
        choice = self._choose(load_step, skip) if dist_utils.rank() == 0 else None
        choice = dist_utils.broadcast_object(choice)
        if isinstance(choice, Exception):
            raise choice
        if choice is None:
            return None
        step, path = choice
        return CheckpointInfo(step, Path(path), read_meta(Path(path)))

    def _choose(self, load_step: int, skip: frozenset[int]) -> tuple[int, str] | Exception | None:
        if load_step >= 0:
            path = self.folder / f"step-{load_step}"
            reason = check_complete(path)
            if reason is not None:
                available = [s for s, p in self.step_folders() if check_complete(p, verify_checksums=False) is None]
                return FileNotFoundError(
                    f"checkpoint.load_step={load_step}: {path} is not a usable checkpoint ({reason}); "
                    f"complete checkpoints: {available}"
                )
            return load_step, str(path)
        for step, path in reversed(self.step_folders()):
            if step in skip:
                continue
            reason = check_complete(path)
            if reason is None:
                return step, str(path)
            logger.warning(f"skipping checkpoint {path}: {reason}; falling back to an older one")
        return None

    def track(self, **states: Any) -> None:
        """The stateful objects every save writes and every resume restores (model, optimizer, LR
        scheduler, per-rank data and RNG state, train state, EMA); the trainer re-points them per stage."""
        self.states = states

    def save(self, step: int, meta: dict) -> None:
        """Write the tracked state as ``step-<step>``; ``meta`` (JSON) goes into the completion marker."""
        self.wait()
        tmp = self.folder / f"step-{step}.tmp"
        flat = {k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in self.states.items()}
        with self._disk_full_is_one_line(step, tmp):
            if self.cfg.async_mode == "async":
                future = dcp.async_save(flat, checkpoint_id=str(tmp), process_group=self._async_group)
                self._pending = (future, step, tmp, meta)
                logger.info(f"checkpoint step-{step}: saving in the background")
            else:
                dcp.save(flat, checkpoint_id=str(tmp))
                self._finalize(step, tmp, meta)

    def restore(self, path: Path) -> None:
        """Load the tracked state from the checkpoint at ``path``."""
        load_into(path, self.states)

    def wait(self) -> None:
        """Block until a background save is finished and published."""
        if self._pending is None:
            return
        future, step, tmp, meta = self._pending
        self._pending = None
        with self._disk_full_is_one_line(step, tmp):
            future.result()
            self._finalize(step, tmp, meta)

    @contextmanager
    def _disk_full_is_one_line(self, step: int, tmp: Path) -> Iterator[None]:
        """A save that ran out of space: the unfinished folder is removed (the previous checkpoints were
        never touched) and ``DiskFullError`` names the folder."""
        try:
            yield
        except BaseException as e:  # DCP's CheckpointException is a BaseException
            if not is_disk_full(e):
                raise
            if dist_utils.rank() == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise DiskFullError(f"no space left on the device of {self.folder} while saving checkpoint step-{step}; "
                                "the unfinished save was removed and the previous checkpoints are intact: free "
                                "space (or lower checkpoint.keep_latest_k) and restart to resume") from None

    def _finalize(self, step: int, tmp: Path, meta: dict) -> None:
        # DCP's coordinator writes .metadata only after every rank's shards are written, so once
        # rank 0 is here the folder holds the whole checkpoint.
        if dist_utils.rank() == 0:
            final = self.folder / f"step-{step}"
            marker = {"step": step, **meta, "files": _file_sizes(tmp), "crc32": folder_crc32(tmp, (MARKER,))}
            with open(tmp / MARKER, "w") as f:
                json.dump(marker, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            if final.exists():  # re-saving a step after a crash and replay
                shutil.rmtree(final)
            os.replace(tmp, final)
            logger.info(f"checkpoint saved: {final}")
            self._purge()
        dist_utils.barrier()

    def _purge(self) -> None:
        """Delete complete checkpoints beyond the newest ``keep_latest_k``; stage-final ones stay."""
        k = self.cfg.keep_latest_k
        if k <= 0:
            return
        candidates = [
            p for _, p in self.step_folders()
            if check_complete(p, verify_checksums=False) is None and not read_meta(p).get("stage_final")
        ]
        for path in candidates[:-k]:
            logger.info(f"deleting old checkpoint {path} (keep_latest_k={k})")
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        self.wait()
        if self._async_group is not None:
            dist.destroy_process_group(self._async_group)
            self._async_group = None


def _drop_unsaved_optimizer_state(optim_state: dict[str, Any], path: Path) -> bool:
    """Leave out the parameters a checkpoint has no optimizer state for (written before they had a
    gradient, by a version that did not initialise it): they keep the fresh AdamW state."""
    saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    unsaved = [fqn for fqn, entries in optim_state.get("state", {}).items()
               if not all(f"optimizer.state.{fqn}.{key}" in saved for key in entries)]
    for fqn in unsaved:
        del optim_state["state"][fqn]
    if unsaved:
        logger.info(f"{path}: no optimizer state yet for {len(unsaved)} parameters (e.g. {unsaved[0]}); "
                    "they start as AdamW would")
    return bool(unsaved)


def load_into(path: Path, states: dict[str, Any]) -> None:
    """Load ``states``' keys from the checkpoint at ``path`` into the objects of ``states``."""
    flat = {k: (v.state_dict() if hasattr(v, "state_dict") else v) for k, v in states.items()}
    if "optimizer" in flat:
        states["optimizer"].partial = _drop_unsaved_optimizer_state(flat["optimizer"], path)
    dcp.load(flat, checkpoint_id=str(path))
    for key, obj in states.items():
        if hasattr(obj, "load_state_dict"):
            obj.load_state_dict(flat[key])
        elif isinstance(obj, dict):
            obj.update(flat[key])
