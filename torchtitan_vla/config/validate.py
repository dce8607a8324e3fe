"""Cross-checks of every resolved stage, at load time, before anything is built or trained.

Field types and ranges are checked while loading (coercion.py); what is checked here involves several
fields or the files a configuration points at: component and source names that must exist, exclusive
options, paths, and the LeRobot datasets' keys and widths against the Action Expert's. Each failure is
one ``ConfigError`` naming the file, the stage and the key, with the closest valid value when there is
one, so a typo in the last stage fails before the first one trains.
"""

from __future__ import annotations

import glob
import json
import math
import os
import typing
from typing import Any

from ..data.action_transform import ActionTransform
from ..data.hub import resolve_hub_paths
from ..data.lerobot_images import VISUAL_DTYPES, default_camera_keys
from .coercion import closest
from .constraints import Component
from .data import DataSource
from .errors import ConfigError
from .job_config import JobConfig
from .loader import LoadedConfig, load_config
from .stages import ResolvedStage, resolve_stages

ALL_COMPONENTS: tuple[str, ...] = typing.get_args(Component)


def validate_stages(stages: list[ResolvedStage], source: str) -> None:
    """Raise a ConfigError for the first problem found in any stage (in stage order)."""
    infos: dict[str, Any] = {}  # LeRobot meta/info.json by dataset root (and the FAST tokenizer), read once per job
    for stage in stages:
        _StageCheck(stage, source, infos).run()


def load_stages(
    config_path: str | None, overrides: list[tuple[str, str]] | None = None, validate: bool = True
) -> tuple[LoadedConfig, list[ResolvedStage]]:
    """Load, resolve every stage and cross-check them: what a job runs with, or a ConfigError.

    ``validate=False`` skips the cross-checks, for tools that write a file the config names (a FAST tokenizer
    fitted for it does not exist yet); hub ids are still resolved."""
    loaded = load_config(config_path, overrides)
    stages = resolve_stages(loaded)
    for stage in stages:  # repo ids become local snapshot folders before any path is checked
        for key, problem in resolve_hub_paths(stage.config):
            raise ConfigError(f"{loaded.source}: stage '{stage.name}': '{key}' = {problem}")
    if validate:
        validate_stages(stages, loaded.source)
    return loaded, stages


def lerobot_source(stages: list[ResolvedStage], where: str, stage_name: str | None,
                   source_name: str | None) -> tuple[ResolvedStage, DataSource]:
    """A stage (default: the first) and one of its LeRobot sources (default: the only one), for the tools
    that read a config's data (statistics, FAST tokenizer); a wrong name is one ConfigError listing the valid."""
    stage = next((s for s in stages if s.name == stage_name), None) if stage_name else stages[0]
    if stage is None:
        raise ConfigError(f"{where}: no stage '{stage_name}' (stages: {[s.name for s in stages]})")
    sources = {s.name: s for s in stage.config.data.sources if s.kind == "lerobot"}
    if source_name is None and len(sources) == 1:
        return stage, next(iter(sources.values()))
    if source_name not in sources:
        raise ConfigError(f"{where}: stage '{stage.name}' has no LeRobot source '{source_name}' (LeRobot "
                          f"sources: {sorted(sources)}); name one with --source")
    return stage, sources[source_name]


def _exists(path: str) -> bool:
    """A local file or folder, or a glob of shards matching at least one."""
    return os.path.exists(path) or (glob.has_magic(path) and bool(glob.glob(path)))


def _width(feature: dict) -> int:
    return math.prod(int(d) for d in feature.get("shape", [1]))


class _StageCheck:
    def __init__(self, stage: ResolvedStage, source: str, infos: dict[str, Any]):
        self.cfg: JobConfig = stage.config
        self.where = f"{source}: stage '{stage.name}'"
        self.infos = infos

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError(f"{self.where}: '{key}' {problem}")

    def run(self) -> None:
        self.components()
        self.sources()
        self.training()
        self.checkpoint()
        self.paths()
        self.parallelism()
        self.lerobot()
        self.scale()

    def scale(self) -> None:
        """float8 and torchft: their packages and the layouts they support."""
        cfg = self.cfg
        from ..parallel.fault_tolerance import torchft_available
        from ..parallel.float8 import torchao_available

        if cfg.float8.enable:
            if not torchao_available():
                self.fail("float8.enable", "needs torchao: pip install '.[float8]'")
            if cfg.parallelism.tensor_parallel_degree > 1:
                self.fail("float8.enable", "with parallelism.tensor_parallel_degree > 1 is not supported yet")
        ft = cfg.fault_tolerance
        if ft.enable:
            if ft.replica_id >= ft.group_size:
                self.fail("fault_tolerance.replica_id", f"= {ft.replica_id} must be below group_size = {ft.group_size}")
            if not torchft_available():
                self.fail("fault_tolerance.enable", "needs torchft, which is not installed: pip install '.[ft]'")

    def name_in(self, key: str, name: str, valid: list[str] | tuple[str, ...], what: str) -> None:
        if name not in valid:
            self.fail(key, f"names {what} '{name}', not one of {list(valid)}{closest(name, valid)}")

    def components(self) -> None:
        cfg = self.cfg
        existing = ALL_COMPONENTS if cfg.action_expert.enable else ("vision", "decoder")
        lists = {
            "training.trainable": cfg.training.trainable,
            "activation_checkpoint.components": cfg.activation_checkpoint.components,
            "compile.components": cfg.compile.components,
            "optimizer.component_lr": list(cfg.optimizer.component_lr),
            "optimizer.component_weight_decay": list(cfg.optimizer.component_weight_decay),
        }
        if cfg.model.lora_rank > 0:
            lists["model.lora_components"] = cfg.model.lora_components
        for key, names in lists.items():
            # The full list of every component (the defaults) means "all the model has".
            if sorted(names) == sorted(ALL_COMPONENTS) and not key.startswith("optimizer."):
                continue
            for name in names:
                if name not in existing:
                    self.fail(key, f"names component '{name}', which this model does not have "
                                   f"(action_expert.enable = false); components: {list(existing)}")

    def sources(self) -> None:
        data = self.cfg.data
        names = [s.name for s in data.sources]
        for i, src in enumerate(data.sources):
            if not src.name:
                self.fail(f"data.sources[{i}].name", "must not be empty")
            if src.name in names[:i]:
                self.fail(f"data.sources[{i}].name", f"'{src.name}' is used by more than one source")
            if not src.path.startswith("hf://") and not _exists(src.path):
                self.fail(f"data.sources[{i}].path", f"= '{src.path}' does not exist (source '{src.name}')")
            if src.kind == "lerobot" and src.path.startswith("hf://"):
                self.fail(f"data.sources[{i}].path", "hf:// streams web data only; a LeRobot source needs a local root")
        for key, mixture in (("data.mixture", data.mixture), ("data.validation_mixture", data.validation_mixture)):
            for name in mixture:
                self.name_in(f"{key}.{name}", name, names, "source")
            if mixture and sum(mixture.values()) <= 0:
                self.fail(key, f"weights must sum to more than 0, got {mixture}")
        if data.image_min_pixels > data.image_max_pixels:
            self.fail("data.image_min_pixels", f"{data.image_min_pixels} exceeds data.image_max_pixels "
                                               f"{data.image_max_pixels}")

    def training(self) -> None:
        cfg = self.cfg
        t = cfg.training
        if t.global_batch_size != -1 and t.global_batch_size % t.local_batch_size:
            self.fail("training.global_batch_size", f"{t.global_batch_size} is not a multiple of "
                                                    f"training.local_batch_size {t.local_batch_size}")
        if t.validation_freq > 0 and not cfg.data.validation_mixture:
            self.fail("training.validation_freq", f"is {t.validation_freq} but data.validation_mixture is empty")
        if t.flow_time_scale + t.flow_time_offset > 1:
            self.fail("training.flow_time_scale", f"{t.flow_time_scale} + training.flow_time_offset "
                                                  f"{t.flow_time_offset} exceeds 1 (t must stay in (0, 1])")
        expert = cfg.action_expert
        if t.rtc_max_delay and (t.rtc_min_delay > t.rtc_max_delay or t.rtc_max_delay >= expert.action_horizon):
            self.fail("training.rtc_max_delay", f"{t.rtc_max_delay} must lie in [training.rtc_min_delay "
                                                f"{t.rtc_min_delay}, action_expert.action_horizon {expert.action_horizon})")
        if expert.min_period >= expert.max_period:
            self.fail("action_expert.min_period", f"{expert.min_period} must be below action_expert.max_period "
                                                  f"{expert.max_period}")
        fast_users = [k for k, on in (("training.fast_loss_weight", t.fast_loss_weight > 0),
                                      ("model.action_decoding", cfg.model.action_decoding == "fast")) if on]
        if fast_users and not cfg.model.fast_tokenizer_path:
            self.fail(fast_users[0], "needs model.fast_tokenizer_path (a FAST tokenizer from scripts/fit_fast_tokenizer.py)")
        if cfg.eval.closed_loop_episodes > 0 and cfg.eval.execute_steps > expert.action_horizon:
            self.fail("eval.execute_steps", f"{cfg.eval.execute_steps} exceeds action_expert.action_horizon "
                                            f"{expert.action_horizon}")

    def checkpoint(self) -> None:
        ckpt, model = self.cfg.checkpoint, self.cfg.model
        if model.load_hf_weights and ckpt.initial_load_path:
            self.fail("model.load_hf_weights", "and checkpoint.initial_load_path exclude each other; set one")
        if not ckpt.initial_load_model_only:
            self.fail("checkpoint.initial_load_model_only", "= false is not supported (an initial load restores "
                                                             "model weights only)")
        if ckpt.load_step >= 0 and not ckpt.enable:
            self.fail("checkpoint.load_step", f"= {ckpt.load_step} needs checkpoint.enable = true")
        if ckpt.initial_load_path and not os.path.exists(ckpt.initial_load_path):
            self.fail("checkpoint.initial_load_path", f"= '{ckpt.initial_load_path}' does not exist")
        if model.load_hf_weights:
            if not model.hf_assets_path:
                self.fail("model.load_hf_weights", "needs model.hf_assets_path (a Hugging Face Qwen3-VL folder)")
            if not os.path.isfile(os.path.join(model.hf_assets_path, "config.json")):
                self.fail("model.hf_assets_path", f"= '{model.hf_assets_path}' has no config.json "
                                                  "(needed by model.load_hf_weights)")

    def paths(self) -> None:
        cfg = self.cfg
        for key, path in (("model.hf_assets_path", cfg.model.hf_assets_path),
                          ("model.tokenizer_path", cfg.model.tokenizer_path)):
            if path and not os.path.exists(path):
                self.fail(key, f"= '{path}' does not exist")
        fast = self.fast_tokenizer()
        if fast is not None and fast.horizon != cfg.action_expert.action_horizon:
            self.fail("model.fast_tokenizer_path", f"= '{cfg.model.fast_tokenizer_path}' encodes {fast.horizon}-step "
                                                   f"chunks, action_expert.action_horizon is {cfg.action_expert.action_horizon}")
        if cfg.eval.closed_loop_episodes > 0 and cfg.eval.toyworld_data and not os.path.isdir(cfg.eval.toyworld_data):
            self.fail("eval.toyworld_data", f"= '{cfg.eval.toyworld_data}' does not exist (evaluation is on: "
                                            f"eval.closed_loop_episodes = {cfg.eval.closed_loop_episodes})")

    def parallelism(self) -> None:
        p = self.cfg.parallelism
        ep, tp = p.expert_parallel_degree, p.tensor_parallel_degree
        if ep == 1 and tp == 1:
            return
        from ..models.vla.build import vlm_args  # the flavor table or the HF config.json
        from ..parallel.expert_parallel import check_ep  # the rule the parallel plan applies, checked per stage

        try:
            check_ep(vlm_args(self.cfg.model).text.num_experts, ep, tp, f"model.flavor '{self.cfg.model.flavor}'")
        except ValueError as err:
            raise ConfigError(f"{self.where}: {err}") from None
        if p.data_parallel_shard_degree != -1 and p.data_parallel_shard_degree % ep:
            self.fail("parallelism.expert_parallel_degree", f"= {ep} does not divide "
                                                            f"parallelism.data_parallel_shard_degree "
                                                            f"{p.data_parallel_shard_degree}")

    def used_sources(self) -> list[tuple[int, DataSource]]:
        data = self.cfg.data
        used = (set(data.mixture) | set(data.validation_mixture)) or {s.name for s in data.sources}
        return [(i, s) for i, s in enumerate(data.sources) if s.name in used]

    def lerobot(self) -> None:
        expert = self.cfg.action_expert
        for i, src in self.used_sources():
            if src.kind != "lerobot":
                continue
            info = self.info(i, src)
            features = info.get("features", {})
            visual = [k for k, f in features.items() if f.get("dtype") in VISUAL_DTYPES]
            prefix = f"data.sources[{i}]"
            for key, name in (("state_key", src.state_key), ("action_key", src.action_key)):
                self.name_in(f"{prefix}.{key}", name, list(features), f"the feature of {src.path}")
            for key in ("camera_keys", "wrist_camera_keys"):
                for name in getattr(src, key):
                    self.name_in(f"{prefix}.{key}", name, visual, f"the video feature (or image feature) of {src.path}")
            cameras = src.camera_keys or default_camera_keys(features)
            for name in src.wrist_camera_keys:
                self.name_in(f"{prefix}.wrist_camera_keys", name, cameras, "the camera")
            transform = ActionTransform.from_source(src)
            stored = _width(features[src.state_key]), _width(features[src.action_key])
            for key, problem in transform.problems(*stored):
                self.fail(f"{prefix}.{key}", f"{problem} ('{src.state_key}' / '{src.action_key}' of {src.path})")
            for key, name, width, limit, limit_key in zip(
                ("state_key", "action_key"), (src.state_key, src.action_key), transform.widths(*stored),
                (expert.max_state_dim, expert.max_action_dim), ("action_expert.max_state_dim", "action_expert.max_action_dim"),
            ):
                if width > limit:
                    self.fail(f"{prefix}.{key}", f"'{name}' of {src.path} is {width} wide, more than "
                                                 f"{limit_key} {limit}")
            fast = self.fast_tokenizer()
            if fast is not None and fast.action_dim != transform.widths(*stored)[1]:
                self.fail("model.fast_tokenizer_path", f"encodes {fast.action_dim}-dim actions, '{src.action_key}' of "
                                                       f"{src.path} gives {transform.widths(*stored)[1]} (source {src.name})")
            if src.subtask_key:
                self.subtask(f"{prefix}.subtask_key", src, features)
            if transform.is_delta and not src.stats_path and src.normalization != "none":
                self.fail(f"{prefix}.stats_path", "delta_action_dims need statistics of the delta actions: run "
                                                  "scripts/compute_norm_stats.py --config <this file> and set stats_path")

    def fast_tokenizer(self):
        """``model.fast_tokenizer_path`` loaded (once per job), None when unset; unreadable: one error line."""
        path = self.cfg.model.fast_tokenizer_path
        if not path:
            return None
        key = f"fast_tokenizer:{path}"
        if key not in self.infos:
            from ..processing.fast import FastTokenizer  # noqa: PLC0415 (tokenizers is heavy for a config check)

            if not os.path.isfile(path):
                self.fail("model.fast_tokenizer_path", f"= '{path}' does not exist")
            try:
                self.infos[key] = FastTokenizer.load(path)
            except ValueError as err:
                self.fail("model.fast_tokenizer_path", f"= '{path}' cannot be read: {err}")
        return self.infos[key]

    def subtask(self, key: str, src: DataSource, features: dict) -> None:
        """The subtask column exists (``subtask`` is LeRobot's ``subtask_index``)."""
        columns = [k for k, f in features.items() if f.get("dtype") == "string"]
        columns += ["subtask"] if "subtask_index" in features else []
        self.name_in(key, src.subtask_key, columns, f"the per-frame language column of {src.path}")

    def info(self, index: int, src: DataSource) -> dict:
        if src.path not in self.infos:
            path = os.path.join(src.path, "meta", "info.json")
            try:
                with open(path) as f:
                    self.infos[src.path] = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                self.fail(f"data.sources[{index}].path", f"= '{src.path}' is not a LeRobot dataset ({path}: {e})")
        return self.infos[src.path]
