"""Robot samples from a LeRobot dataset: camera frames, instruction prompt, state and action chunk."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..processing.fast_vocab import FastActions
from ..utils.logging import logger
from .action_transform import ActionTransform
from .augment import augment_image
from .errors import DataError
from .lerobot import LeRobotReader
from .mixture import SourceStream
from .normalize import TRANSFORM_KEY, Normalizer, discretize_state, load_stats_file, pad_last
from .prompts import PromptBuilder
from .sample import Sample
from .video import CorruptMediaError


class BadValueError(DataError, ValueError):
    """A non-finite state or action value; the sample is skipped and counted (or the run stops in strict mode)."""


def robot_sample(prompts: PromptBuilder, images: list[np.ndarray], image_size: int, instruction: str,
                 state: np.ndarray, actions: np.ndarray, action_is_pad: np.ndarray, action_dim_mask: np.ndarray,
                 *, max_state_dim: int, max_action_dim: int, state_mode: str, state_bins: int,
                 source_id: int = 0, what: str = "", subtask: str = "", fast_tokens: list[int] | None = None,
                 open_fast_segment: bool = False) -> Sample:
    """The Sample of one robot observation: prompt (images + instruction, + binned state for pi0.5) and
    the padded, already-normalized state and action chunk. Training and serving both build samples
    here, so a served policy sees exactly the inputs it was trained on. ``what`` names the data in errors.
    ``subtask``: the current subtask, appended after the prompt (``PromptBuilder.subtask_segment``).
    ``fast_tokens``: the chunk's FAST tokens (VLM ids), appended as the FAST action segment (training);
    ``open_fast_segment``: only its opening ``"Action: "``, where pi0-FAST decoding continues."""
    bins = discretize_state(state, state_bins) if state_mode == "discrete" else None
    doc = prompts.robot(images, (image_size, image_size), instruction, bins)
    if subtask:
        doc = prompts.subtask_segment(doc, subtask)
    fast_mask = None
    if fast_tokens is not None or open_fast_segment:
        doc, flags = prompts.action_segment(doc, fast_tokens)
        fast_mask = torch.tensor(flags)
    return doc.to_sample(
        source_id,
        prompts.image_token_id,
        state=pad_last(state, max_state_dim, f"state{what}"),
        actions=pad_last(actions, max_action_dim, f"action{what}"),
        action_is_pad=action_is_pad,
        action_dim_mask=action_dim_mask,
        fast_mask=fast_mask,
    )


def check_stats_transform(stats: dict, transform: ActionTransform, where: str, normalization: str) -> None:
    """Statistics must describe the values the model sees: a stats file written for another transform, or
    the dataset's own (absolute) stats with delta actions, is refused, naming the file."""
    if normalization == "none":
        return
    recorded = stats.get(TRANSFORM_KEY)
    if recorded is None and not transform.is_delta:
        return
    if recorded is None or ActionTransform.from_dict(recorded) != transform:
        found = "absolute-action stats" if recorded is None else f"stats of the transform {recorded}"
        raise ValueError(f"{where}: the source's transform {transform.to_dict()} needs statistics computed after "
                         f"it, found {found}: run scripts/compute_norm_stats.py --config <your.toml> --source "
                         "<name> --out FILE and set the source's stats_path to FILE")


def source_normalizers(reader: LeRobotReader, transform: ActionTransform, normalization: str,
                       stats_path: str = "") -> tuple[Normalizer, Normalizer]:
    """(state, action) normalizers of a source: ``stats_path``'s statistics, else the dataset's own, checked
    to describe the values after ``transform`` (``check_stats_transform``)."""
    stats = load_stats_file(stats_path) if stats_path else reader.stats()
    check_stats_transform(stats, transform, stats_path or f"{reader.root}/meta/stats", normalization)
    return (Normalizer(normalization, stats_for(stats, reader.state_key, transform.state_dims), reader.state_key),
            Normalizer(normalization, stats_for(stats, reader.action_key, transform.action_dims), reader.action_key))


def frame_rows(reader: LeRobotReader) -> tuple[np.ndarray, np.ndarray]:
    """(rows, last): every frame's row in the reader's arrays and the last row of its episode."""
    rows = np.concatenate([np.arange(ep.start, ep.start + ep.length) for ep in reader.episodes])
    last = np.concatenate([np.full(ep.length, ep.start + ep.length - 1) for ep in reader.episodes])
    return rows, last


def chunk_rows(rows: np.ndarray, last: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) rows of the action chunk at each of ``rows``: steps past the episode's ``last`` row repeat
    its last action (what ``RobotSampleBuilder.chunk`` gives, for many frames at once)."""
    return np.minimum(rows[:, None] + np.arange(horizon), last[:, None])


def stats_for(stats: dict, key: str, dims: list[int]) -> dict | None:
    """Statistics of feature ``key`` for the selected ``dims``: a compute_norm_stats.py file (transform
    recorded) holds the selected dimensions already; the dataset's own stats are indexed here."""
    entry = stats.get(key)
    if entry is None or not dims or TRANSFORM_KEY in stats:
        return entry
    return {k: (v if k == "count" or np.ndim(v) != 1 else v[dims]) for k, v in entry.items()}


class RobotSampleBuilder:
    """Turns (episode, frame) of a LeRobot dataset into a Sample (one prompt document, labels all -100)."""

    def __init__(self, reader: LeRobotReader, prompts: PromptBuilder, *, action_horizon: int, max_action_dim: int,
                 max_state_dim: int, normalization: str = "mean_std", stats_path: str = "",
                 image_size: int = 224, augment: bool = False, wrist_camera_keys: list[str] | None = None,
                 instruction: str = "", state_mode: str = "continuous", state_bins: int = 256,
                 transform: ActionTransform | None = None, subtask_key: str = "",
                 fast: FastActions | None = None):
        self.reader, self.prompts = reader, prompts
        self.horizon, self.max_action_dim, self.max_state_dim = action_horizon, max_action_dim, max_state_dim
        self.transform = transform or ActionTransform()
        problems = self.transform.problems(reader.state.shape[1], reader.action.shape[1])
        if problems:
            raise ValueError(f"{reader.root}: {problems[0][0]} {problems[0][1]}")
        self.state_dim, self.action_dim = self.transform.widths(reader.state.shape[1], reader.action.shape[1])
        self.state_norm, self.action_norm = source_normalizers(reader, self.transform, normalization, stats_path)
        for dim, limit, what in ((self.state_dim, max_state_dim, "max_state_dim"),
                                 (self.action_dim, max_action_dim, "max_action_dim")):
            if dim > limit:
                raise ValueError(f"{reader.root}: {dim}-dim {what[4:-4]} exceeds action_expert.{what}={limit}")
        if not reader.camera_keys:
            visual = [k for k, f in reader.features.items() if f.get("dtype") in ("video", "image")]
            raise ValueError(f"{reader.root}: no camera to read: the image/video features are {visual} "
                             "(depth maps are used only when named in camera_keys)")
        self.image_size = image_size
        self.augment = augment
        self.wrist = set(wrist_camera_keys or [])
        unknown = self.wrist - set(reader.camera_keys)
        if unknown:
            raise ValueError(f"{reader.root}: wrist camera keys {sorted(unknown)} are not cameras {reader.camera_keys}")
        self.instruction = instruction
        self.state_mode, self.state_bins = state_mode, state_bins
        self.dim_mask = np.arange(max_action_dim) < self.action_dim
        self.subtasks = subtask_column(reader, subtask_key)
        self.fast = fast
        """The FAST action tokenizer in the VLM's vocabulary: each sample ends with its chunk's tokens."""
        if fast is not None and (fast.horizon, fast.action_dim) != (action_horizon, self.action_dim):
            raise ValueError(f"{reader.root}: the FAST tokenizer encodes {fast.horizon} x {fast.action_dim} chunks, "
                             f"this source gives {action_horizon} x {self.action_dim}")

    def chunk(self, episode_pos: int, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw state (Ds,), raw actions (H, Da), is_pad (H,)): steps past the end repeat the last action."""
        ep = self.reader.episodes[episode_pos]
        steps = frame + np.arange(self.horizon)
        is_pad = steps >= ep.length
        rows = ep.start + np.minimum(steps, ep.length - 1)
        return self.reader.state[ep.start + frame], self.reader.action[rows], is_pad

    def build(self, episode_pos: int, frame: int, source_id: int, rng: np.random.Generator) -> Sample:
        ep = self.reader.episodes[episode_pos]
        state, actions, is_pad = self.chunk(episode_pos, frame)
        if not (np.isfinite(state).all() and np.isfinite(actions).all()):
            what = self.reader.state_key if not np.isfinite(state).all() else self.reader.action_key
            raise BadValueError(f"{self.reader.where(ep, frame)}: non-finite '{what}' value in this sample "
                                f"(state, or the {self.horizon}-step action chunk)")
        state_n = self.state_norm(self.transform.state(state))
        actions_n = self.action_norm(self.transform.to_model(state, actions))
        # Native frames: augmentation crops them first; the prompt builder then resizes every camera to
        # the model's size with the same function serving uses (data.image_resize).
        frames = self.reader.frames(ep, frame)
        images = [frames[cam] for cam in self.reader.camera_keys]
        if self.augment:
            images = [augment_image(im, rng, wrist=cam in self.wrist) for cam, im in zip(self.reader.camera_keys, images)]
        return robot_sample(
            self.prompts, images, self.image_size, self.instruction or self.reader.task(ep, frame), state_n,
            actions_n, is_pad, self.dim_mask, max_state_dim=self.max_state_dim, max_action_dim=self.max_action_dim,
            state_mode=self.state_mode, state_bins=self.state_bins, source_id=source_id,
            what=f" of {self.reader.root}",
            subtask="" if self.subtasks is None else self.subtasks[ep.start + frame],
            fast_tokens=None if self.fast is None else self.fast.tokens(actions_n),
        )


def subtask_column(reader: LeRobotReader, key: str) -> np.ndarray | None:
    """The per-frame subtask texts of ``reader`` under ``key`` (a ``DataSource.subtask_key``; None: none)."""
    if not key:
        return None
    if key not in reader.language:
        raise ValueError(f"{reader.root}: subtask_key '{key}' is not a per-frame language column of the dataset "
                         f"(it has {sorted(reader.language) or 'none'})")
    return reader.language[key]


def policy_extras(src) -> dict[str, Any]:
    """What a served policy needs of the robot source it was trained on (train/export.py writes it into the
    export's config.json): cameras, the stored state width the client sends, the model's action width the
    client gets back, the statistics actually used, and the source's ``action_transform``."""
    reader = LeRobotReader(src.path, src.state_key, src.action_key, src.camera_keys, src.episodes)
    transform = ActionTransform.from_source(src)
    stats = load_stats_file(src.stats_path) if src.stats_path else reader.stats()
    check_stats_transform(stats, transform, src.stats_path or f"{reader.root}/meta/stats", src.normalization)

    def lists(entry: dict | None) -> dict:
        return {k: np.asarray(v).tolist() for k, v in (entry or {}).items()}

    return {
        "camera_keys": reader.camera_keys,
        "state_dim": int(reader.state.shape[1]),
        "action_dim": transform.widths(reader.state.shape[1], reader.action.shape[1])[1],
        "norm_stats": {
            "mode": src.normalization,
            "state": lists(stats_for(stats, src.state_key, transform.state_dims)),
            "action": lists(stats_for(stats, src.action_key, transform.action_dims)),
        },
        "action_transform": transform.to_dict(),
    }


class RobotStream(SourceStream):
    """Frames of the dataset in a per-epoch random order, this stream's share of each permutation."""

    def __init__(self, builder: RobotSampleBuilder, source_id: int, name: str, seed: int, stream_id: int,
                 num_streams: int, strict: bool):
        self.builder, self.source_id, self.name = builder, source_id, name
        self.seed, self.stream_id, self.num_streams, self.strict = seed, stream_id, num_streams, strict
        lengths = np.array([ep.length for ep in builder.reader.episodes])
        self.episode_starts = np.concatenate([[0], np.cumsum(lengths)])
        if self.episode_starts[-1] < num_streams:
            raise ValueError(f"source '{name}' has {self.episode_starts[-1]} frames, fewer than the "
                             f"{num_streams} data-loading streams (ranks x workers)")
        self.epoch, self.position = 0, 0
        self.skipped = 0
        self._order: np.ndarray | None = None

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            perm = np.random.default_rng([self.seed, self.source_id, self.epoch]).permutation(self.episode_starts[-1])
            self._order = perm[self.stream_id::self.num_streams]
        return self._order

    def _advance(self) -> int:
        order = self._epoch_order()
        index = int(order[self.position])
        self.position += 1
        if self.position == len(order):
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        return index

    def next(self, rng: np.random.Generator) -> Sample:
        failures = 0
        while True:
            index = self._advance()
            episode_pos = int(np.searchsorted(self.episode_starts, index, side="right") - 1)
            frame = index - int(self.episode_starts[episode_pos])
            try:
                return self.builder.build(episode_pos, frame, self.source_id, rng)
            except (CorruptMediaError, BadValueError) as err:
                if self.strict:
                    raise
                self.skipped += 1
                failures += 1
                logger.warning(f"data source '{self.name}': skipped a sample: {err}")
                if failures >= 100:
                    raise RuntimeError(f"data source '{self.name}': 100 consecutive samples failed; last: {err}") from err

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None
