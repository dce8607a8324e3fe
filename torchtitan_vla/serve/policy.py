"""An exported VLA as a policy: one raw observation in, one unnormalized action chunk out.

The export folder (written by the trainer at the end of a job):

* ``model.safetensors.index.json`` and the safetensors shards it names: the VLA's state dict under its
  own names (written by ``parallel.weights_writer``, read by ``parallel.weights``);
* ``config.json``: the resolved JobConfig as a dict (one key per section) plus ``camera_keys`` (the
  dataset cameras, in prompt order), ``state_dim``, ``action_dim`` (the robot's real widths) and
  ``norm_stats`` = ``{"mode": "mean_std" | "quantile" | "none", "state": {mean, std, q01, q99, ...},
  "action": {...}}`` (the statistics the training data was normalized with) and, optionally,
  ``action_transform`` (data/action_transform.py: the source's picked dimensions and delta actions; the
  client sends the stored state and gets absolute actions back);
* ``tokenizer.json``;
* ``fast_tokenizer.json`` when the model learned FAST action tokens (``model.fast_tokenizer_path`` then
  names it, relative to the folder); with ``model.action_decoding = "fast"`` the policy decodes them
  (pi0-FAST) instead of sampling the flow, and counts the streams it had to repair.

Observation -> ``Batch`` goes through the data pipeline's own pieces (prompt rendering, image resizing and
patching, normalization, collation), so serving sees exactly what training saw.

A policy trained with subtask annotations (pi0.5's hierarchy) first generates the current subtask with the
VLM (greedy, KV-cached, at most ``action_expert.subtask_max_tokens``), then samples the actions conditioned
on it, and answers the subtask under the extra key ``"subtask"`` (clients that do not know it ignore it).
A request may give the subtask itself under the same key; then nothing is generated.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from torchtitan_vla.config import JobConfig, config_from_dict
from torchtitan_vla.config.model import RTCSchedule
from torchtitan_vla.data.action_transform import ActionTransform
from torchtitan_vla.data.batch import Batch
from torchtitan_vla.data.normalize import Normalizer
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.robot import robot_sample
from torchtitan_vla.data.sample import Collator, Sample
from torchtitan_vla.models.action_expert.rtc import RTCInputs
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.models.vla.build import fast_actions
from torchtitan_vla.models.vla.fast_decoding import decode_fast_actions
from torchtitan_vla.models.vla.generate import greedy_decode
from torchtitan_vla.parallel.weights import INDEX_NAME, load_weights_from, safetensors_files
from torchtitan_vla.parallel.weights_writer import verify_checksums
from torchtitan_vla.processing.tokenizer import Tokenizer
from torchtitan_vla.utils.checksums import export_content_hash

from .key_map import SUBTASK_KEY, ObservationKeyMap
from .protocol import RequestError
from .rtc_keys import rtc_inputs, rtc_settings

EXPORT_FILES = (INDEX_NAME, "config.json", "tokenizer.json")
# Sides above it are refused; a camera frame as large as 1024 px is unusual, the model resizes to
# data.image_size anyway, and the server's default message limit follows from it.
DEFAULT_MAX_IMAGE_SIDE = 1024
_EXPORT_EXTRA_KEYS = ("camera_keys", "state_dim", "action_dim", "norm_stats")
SubtaskMode = Literal["auto", "predict", "none"]


def read_export_config(folder: str | Path) -> tuple[JobConfig, dict[str, Any]]:
    """The JobConfig and the serving extras (``camera_keys``, ``state_dim``, ``action_dim``, ``norm_stats``)
    of an export folder; a missing file or key is an error that names it."""
    folder = Path(folder)
    for name in EXPORT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"exported policy folder {folder} lacks {name} (expected {', '.join(EXPORT_FILES)})")
    safetensors_files(folder)  # every shard the index names exists
    verify_checksums(folder)  # flipped bytes in a shard or config file: an error naming it, not wrong actions
    path = folder / "config.json"
    with open(path) as f:
        raw = json.load(f)
    missing = [k for k in _EXPORT_EXTRA_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    sections = {f.name for f in fields(JobConfig)}
    cfg = config_from_dict({k: v for k, v in raw.items() if k in sections}, str(path))
    if cfg.model.fast_tokenizer_path:
        cfg.model.fast_tokenizer_path = str(folder / cfg.model.fast_tokenizer_path)
        if not Path(cfg.model.fast_tokenizer_path).is_file():
            raise FileNotFoundError(f"{path} names the FAST tokenizer {cfg.model.fast_tokenizer_path}, which is missing")
    extras = {k: raw[k] for k in _EXPORT_EXTRA_KEYS}
    extras["action_transform"] = raw.get("action_transform") or {}  # exports before it: no transform
    if not extras["action_dim"] or not cfg.action_expert.enable:
        raise ValueError(f"{path}: this export has no action expert or no robot data (a VLM-only stage?); "
                         "nothing to serve")
    for what in ("state", "action"):
        if what not in extras["norm_stats"]:
            raise ValueError(f"{path}: norm_stats lacks '{what}'")
    return cfg, extras


@dataclass
class PreparedObservation:
    """A checked observation waiting for its batch: the model input and its own flow noise."""

    sample: Sample
    state: np.ndarray
    """(state_dim,) the request's stored (raw) state: delta actions are made absolute against it."""
    noise: torch.Tensor
    """(1, H, max_action_dim) float32."""

    rtc: RTCInputs | None = None
    """The request's previous chunk and delay (real-time chunking), or None for a plain request."""

    subtask: str | None = None
    """The subtask the request gave (in ``sample``'s prompt already), or None."""


class ObservationError(RequestError):
    """An observation the policy cannot serve (missing key, wrong shape or dtype, image too small or large)."""


class Policy:
    """``infer(obs) -> {"actions": float32 (H, action_dim), "policy_timing": {"infer_ms": ..., "batch_size": 1}}``.

    ``obs`` holds the client keys of ``key_map``: one uint8 image (H, W, 3) (or (3, H, W)) per camera, the
    raw state vector and the prompt string. Usable in-process or behind ``PolicyServer``, which batches
    concurrent requests through ``prepare`` + ``infer_prepared``.

    ``subtask``: ``predict`` generates each request's subtask first (unless the request gives one),
    ``none`` never does, ``auto`` predicts when the policy was trained with subtask annotations.
    """

    def __init__(self, model: VLA, tokenizer: Tokenizer, cfg: JobConfig, extras: dict[str, Any],
                 key_map: ObservationKeyMap | None = None, device: str | torch.device = "cpu",
                 num_steps: int | None = None, subtask: SubtaskMode = "auto"):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.camera_keys: list[str] = list(extras["camera_keys"])
        self.state_dim = int(extras["state_dim"])
        self.action_dim = int(extras["action_dim"])
        expert = cfg.action_expert
        self.horizon = expert.action_horizon
        self.num_steps = num_steps or expert.num_inference_steps
        stats = extras["norm_stats"]
        mode = stats.get("mode", "mean_std")
        self.state_norm = Normalizer(mode, _arrays(stats["state"]), "state")
        self.action_norm = Normalizer(mode, _arrays(stats["action"]), "action")
        self.transform = ActionTransform.from_dict(extras.get("action_transform"))
        self.key_map = key_map or ObservationKeyMap.default(self.camera_keys)
        self.key_map.check_cameras(self.camera_keys)
        self.prompts = PromptBuilder(tokenizer, cfg.data)
        self.collate = Collator(tokenizer.pad_id, cfg.data.max_seq_len, self.horizon, expert.max_action_dim,
                                expert.max_state_dim, num_sources=1, pad_to_max_seq_len=False)
        self.dim_mask = np.arange(expert.max_action_dim) < self.action_dim
        self.fast = fast_actions(cfg.model, tokenizer)
        self.decoding = cfg.model.action_decoding
        if self.decoding == "fast" and self.fast is None:
            raise ValueError("model.action_decoding = 'fast' needs model.fast_tokenizer_path")
        self.fast_decodes = 0
        """pi0-FAST chunks produced so far."""
        self.fast_fallbacks = 0
        """Of those, the chunks whose token stream was invalid (no EOS within the cap, or not a clean FAST
        decode) and was repaired (``models/vla/fast_decoding.py``)."""
        if subtask not in ("auto", "predict", "none"):
            raise ValueError(f"subtask mode {subtask!r}; expected 'auto', 'predict' or 'none'")
        mixture = cfg.data.mixture  # the last stage's: the sources the exported weights were trained on
        trained = any(src.subtask_key and (not mixture or src.name in mixture) for src in cfg.data.sources)
        self.predict_subtask = subtask == "predict" or (subtask == "auto" and trained)
        self.max_image_side = DEFAULT_MAX_IMAGE_SIDE
        """Longest image side accepted (the server's ``--max-image-side``)."""
        self.metadata: dict[str, Any] = {
            "action_horizon": self.horizon,
            "action_decoding": self.decoding,
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "observation_keys": {"images": dict(self.key_map.images), "state": self.key_map.state,
                                 "prompt": self.key_map.prompt},
            "real_time_chunking": rtc_settings(cfg),
        }

    def set_rtc(self, max_guidance_weight: float | None = None, schedule: RTCSchedule | None = None) -> None:
        """Override the export's inference-time RTC settings (the server's ``--rtc-*`` flags); None keeps one."""
        expert = self.cfg.action_expert
        if max_guidance_weight is not None:
            if max_guidance_weight < 0:
                raise ValueError(f"the RTC max guidance weight must be >= 0, got {max_guidance_weight}")
            expert.rtc_max_guidance_weight = max_guidance_weight
        if schedule is not None:
            expert.rtc_schedule = schedule
        self.metadata["real_time_chunking"] = rtc_settings(self.cfg)

    @classmethod
    def from_export(cls, folder: str | Path, device: str | torch.device = "cpu",
                    key_map: ObservationKeyMap | None = None, num_steps: int | None = None,
                    subtask: SubtaskMode = "auto") -> Policy:
        folder = Path(folder)
        cfg, extras = read_export_config(folder)
        if cfg.model.hf_assets_path and not Path(cfg.model.hf_assets_path).is_absolute():
            # The architecture travels with the export (train/export.py writes vlm/config.json).
            cfg.model.hf_assets_path = str(folder / cfg.model.hf_assets_path)
        tokenizer = Tokenizer.from_file(folder / "tokenizer.json")
        with torch.device("meta"):
            model = VLA.from_config(cfg.model, cfg.action_expert, tokenizer)
        model.to_empty(device=device)
        # Non-persistent buffers (RoPE tables) are not in the files: initialise, then overwrite every weight.
        model.init_weights(buffer_device=torch.device(device))
        load_weights_from(model, folder)
        policy = cls(model, tokenizer, cfg, extras, key_map=key_map, device=device, num_steps=num_steps,
                     subtask=subtask)
        # What a served result is attributed to: clients record it (the LIBERO harness refuses a result without it).
        policy.metadata["content_hash"] = export_content_hash(folder)
        return policy

    @property
    def max_observation_bytes(self) -> int:
        """Bytes of the largest observation this policy accepts: every camera at ``max_image_side`` squared
        (the state and prompt are small next to the images)."""
        return len(self.camera_keys) * 3 * self.max_image_side**2

    # -- observation -> sample -> batch --
    def _image(self, obs: dict[str, Any], client_key: str) -> np.ndarray:
        if client_key not in obs:
            raise ObservationError(f"observation lacks image key '{client_key}' (got keys {sorted(obs)})")
        image = np.asarray(obs[client_key])
        if image.dtype != np.uint8:
            raise ObservationError(f"observation '{client_key}' must be a uint8 image, got dtype {image.dtype}")
        if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
            image = image.transpose(1, 2, 0)  # openpi's ALOHA client sends CHW
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ObservationError(f"observation '{client_key}' must be an (H, W, 3) or (3, H, W) image, "
                                   f"got shape {tuple(np.shape(obs[client_key]))}")
        if min(image.shape[:2]) == 0 or max(image.shape[:2]) > self.max_image_side:
            raise ObservationError(f"observation '{client_key}' has image sides {image.shape[:2]}: each must be "
                                   f"between 1 and {self.max_image_side} pixels")
        return image

    def _state(self, obs: dict[str, Any]) -> np.ndarray:
        key = self.key_map.state
        if key not in obs:
            raise ObservationError(f"observation lacks state key '{key}' (got keys {sorted(obs)})")
        try:
            state = np.asarray(obs[key], dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise ObservationError(f"observation '{key}' must be a vector of numbers") from None
        if state.shape != (self.state_dim,):
            raise ObservationError(f"observation '{key}' must have {self.state_dim} values, got shape {np.shape(obs[key])}")
        if not np.isfinite(state).all():
            raise ObservationError(f"observation '{key}' contains NaN or inf")
        return state

    def _prompt(self, obs: dict[str, Any]) -> str:
        key = self.key_map.prompt
        prompt = obs.get(key)
        if isinstance(prompt, bytes):
            prompt = prompt.decode(errors="replace")
        if not isinstance(prompt, str):
            raise ObservationError(f"observation lacks a '{key}' string (got {type(prompt).__name__})")
        return prompt

    def sample(self, obs: dict[str, Any]) -> Sample:
        """The checked, normalized model input of one raw observation; a bad one raises ``ObservationError``."""
        return self._sample(obs, self._state(obs) if isinstance(obs, dict) else None)

    def _sample(self, obs: dict[str, Any], state: np.ndarray) -> Sample:
        if not isinstance(obs, dict):
            raise ObservationError(f"an observation must be a dict, got {type(obs).__name__}")
        by_camera = {cam: self._image(obs, key) for key, cam in self.key_map.images.items()}
        expert = self.cfg.action_expert
        sample = robot_sample(
            self.prompts, [by_camera[cam] for cam in self.camera_keys], self.cfg.data.image_size,
            self._prompt(obs), self.state_norm(self.transform.state(state)),
            np.zeros((self.horizon, self.action_dim), np.float32), np.zeros(self.horizon, bool), self.dim_mask,
            max_state_dim=expert.max_state_dim, max_action_dim=expert.max_action_dim,
            state_mode=expert.state_mode, state_bins=expert.state_bins, subtask=_given_subtask(obs) or "",
            open_fast_segment=self.decoding == "fast",
        )
        # Checked here, not at collation, so one long prompt cannot fail the other requests of a batch.
        if len(sample) > self.cfg.data.max_seq_len:
            raise ObservationError(f"the prompt and images make {len(sample)} tokens, over the policy's limit "
                                   f"of {self.cfg.data.max_seq_len}")
        return sample

    def _collate(self, samples: list[Sample]) -> Batch:
        # The chunk is what sampling produces: the batch carries no actions (the contract's inference form).
        return dataclasses.replace(self.collate(samples), actions=None, action_is_pad=None).to(self.device)

    def make_batch(self, observations: dict[str, Any] | list[dict[str, Any]]) -> Batch:
        """The model's ``Batch`` (B = number of observations, on the policy's device) for raw observations."""
        if isinstance(observations, dict):
            observations = [observations]
        return self._collate([self.sample(obs) for obs in observations])

    def prepare(self, obs: dict[str, Any]) -> PreparedObservation:
        """``sample(obs)`` plus this request's flow noise, drawn now from torch's global RNG (one
        (1, H, max_action_dim) draw per request, in the order requests are prepared)."""
        if not isinstance(obs, dict):
            raise ObservationError(f"an observation must be a dict, got {type(obs).__name__}")
        state = self._state(obs)
        sample = self._sample(obs, state)

        def to_model(absolute: np.ndarray) -> np.ndarray:  # the client's previous chunk, as the model sees it
            return self.action_norm(self.transform.to_model(state, absolute))

        try:  # the optional real-time-chunking keys (serve/rtc_keys.py)
            rtc = rtc_inputs(obs, self.cfg, to_model, self.action_dim, self.device)
        except ValueError as err:
            raise ObservationError(str(err)) from None
        noise = torch.randn((1, self.horizon, self.cfg.action_expert.max_action_dim), device=self.device)
        return PreparedObservation(sample, state, noise, rtc, _given_subtask(obs))

    @torch.no_grad()  # not inference_mode: real-time chunking's guidance records one backward per step
    def infer_prepared(self, prepared: list[PreparedObservation]) -> list[dict[str, Any]]:
        """One action chunk per prepared observation. Plain requests share one batched model call; a request
        with real-time-chunking keys (its own previous chunk and delay) is sampled on its own."""
        start = time.perf_counter()
        if self.decoding == "fast":
            return self._infer_fast(prepared, start)
        chunks: list[np.ndarray | None] = [None] * len(prepared)
        subtasks = [p.subtask for p in prepared]
        predict = [self.predict_subtask and p.subtask is None for p in prepared]
        # one batched call per kind of plain request (subtask generated or not); RTC requests one by one
        groups = [[i for i, p in enumerate(prepared) if p.rtc is None and predict[i] == kind] for kind in (False, True)]
        groups += [[i] for i, p in enumerate(prepared) if p.rtc is not None]
        for group in filter(None, groups):
            first = prepared[group[0]]
            rows, texts = self._sample_actions([prepared[i].sample for i in group],
                                               torch.cat([prepared[i].noise for i in group]), first.rtc, predict[group[0]])
            for j, i in enumerate(group):
                chunks[i] = rows[j, :, : self.action_dim].float().cpu().numpy()
                subtasks[i] = texts[j] if texts is not None else subtasks[i]
        timing = {"infer_ms": (time.perf_counter() - start) * 1000, "batch_size": len(prepared)}
        results = []
        for p, chunk, subtask in zip(prepared, chunks, subtasks):
            result = {"actions": self.transform.to_robot(p.state, self.action_norm.inverse(chunk)),
                      "policy_timing": dict(timing)}
            if subtask is not None:
                result[SUBTASK_KEY] = subtask
            results.append(result)
        return results

    def _sample_actions(self, samples: list[Sample], noise: torch.Tensor, rtc: RTCInputs | None,
                        predict: bool) -> tuple[torch.Tensor, list[str] | None]:
        """Action chunks of one batch and, with ``predict``, the subtasks generated first (the actions are
        then sampled against the prompt + subtask cache that generation leaves)."""
        batch = self._collate(samples)
        prefix, texts = None, None
        if predict:
            generated = greedy_decode(self.model, batch, self.cfg.action_expert.subtask_max_tokens,
                                      stop_token_ids=(self.tokenizer.im_end_id,), pad_token_id=self.tokenizer.pad_id)
            prefix = generated.cache
            texts = [self.tokenizer.decode(row[:n], skip_special_tokens=True).strip()
                     for row, n in zip(generated.ids.tolist(), generated.lengths.tolist())]
        return self.model.sample_actions(batch, num_steps=self.num_steps, noise=noise, rtc=rtc, prefix=prefix), texts

    def _infer_fast(self, prepared: list[PreparedObservation], start: float) -> list[dict[str, Any]]:
        """pi0-FAST: one batched greedy decode (real-time chunking keys are ignored: there is no flow to
        guide); every response carries ``fast_decode`` = {ok, fallbacks so far}."""
        decoded = decode_fast_actions(self.model, self._collate([p.sample for p in prepared]), self.fast,
                                      self.tokenizer.eos_id)
        self.fast_decodes += len(prepared)
        self.fast_fallbacks += decoded.ok.count(False)
        timing = {"infer_ms": (time.perf_counter() - start) * 1000, "batch_size": len(prepared)}
        return [{"actions": self.transform.to_robot(p.state, self.action_norm.inverse(chunk.numpy())),
                 "policy_timing": dict(timing), "fast_decode": {"ok": ok, "fallbacks": self.fast_fallbacks}}
                for p, chunk, ok in zip(prepared, decoded.chunks, decoded.ok)]

    def infer_batch(self, observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``[infer(obs) for obs in observations]`` in one model call: the same noise draws, in the same order,
        so the chunks equal the one-at-a-time ones up to float rounding."""
        return self.infer_prepared([self.prepare(obs) for obs in observations])

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        return self.infer_prepared([self.prepare(obs)])[0]


def _given_subtask(obs: dict[str, Any]) -> str | None:
    """The subtask a request gives (``SUBTASK_KEY``), or None; anything but a string is refused."""
    subtask = obs.get(SUBTASK_KEY)
    if isinstance(subtask, bytes):
        subtask = subtask.decode(errors="replace")
    if subtask is not None and not isinstance(subtask, str):
        raise ObservationError(f"observation '{SUBTASK_KEY}' must be a string, got {type(subtask).__name__}")
    return subtask


def _arrays(stats: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in stats.items()}

