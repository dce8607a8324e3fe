"""``build_dataloader``: the configured mixture of sources as a resumable StatefulDataLoader of ``Batch``es."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from ..config.data import DataSource
from ..processing.fast_vocab import FastActions
from ..processing.processor import expand_compact_patches
from .action_transform import ActionTransform
from .document import Packer
from .lerobot import LeRobotReader
from .mixture import MixtureDataset, worker_init
from .prompts import PromptBuilder
from .robot import RobotSampleBuilder, RobotStream
from .sample import Collator
from .web import WebStream


class VLADataLoader(StatefulDataLoader):
    """A StatefulDataLoader that knows its sources' names and counts samples and skips per source."""

    def __init__(self, dataset: MixtureDataset, source_names: list[str], **kwargs):
        super().__init__(dataset, **kwargs)
        self.source_names = source_names
        """Name of each source; ``Batch.source_id`` indexes this list."""
        self.samples_per_source = dict.fromkeys(source_names, 0)
        """Samples of each source delivered so far (restored with the loader state)."""
        self.skipped_per_source = dict.fromkeys(source_names, 0)
        """Examples each source skipped so far (corrupt video/image, unavailable image)."""

    def __iter__(self):
        for batch in super().__iter__():
            if batch.pixel_values is not None and batch.pixel_values.dtype == torch.uint8:
                # Workers send still images as uint8 pixels (1/8 of the float32 patches' bytes: the shared
                # memory they fill and hand over dominated a sample's cost); the batch leaves as float32.
                batch.pixel_values = torch.from_numpy(expand_compact_patches(batch.pixel_values.numpy()))
            for i, name in enumerate(self.source_names):
                self.samples_per_source[name] += int((batch.source_id == i).sum())
                self.skipped_per_source[name] += int(batch.skipped[i])
            yield batch

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["vla_counts"] = {"samples": dict(self.samples_per_source), "skipped": dict(self.skipped_per_source)}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        counts = state_dict.pop("vla_counts", None)
        super().load_state_dict(state_dict)
        if counts:
            self.samples_per_source.update(counts["samples"])
            self.skipped_per_source.update(counts["skipped"])


def _robot_builder(src: DataSource, cfg, prompts: PromptBuilder, fast: FastActions | None = None) -> RobotSampleBuilder:
    reader = LeRobotReader(src.path, src.state_key, src.action_key, src.camera_keys, src.episodes,
                           tolerance_s=cfg.data.timestamp_tolerance_s)
    expert = cfg.action_expert
    return RobotSampleBuilder(
        reader, prompts, action_horizon=expert.action_horizon, max_action_dim=expert.max_action_dim,
        max_state_dim=expert.max_state_dim, normalization=src.normalization, stats_path=src.stats_path,
        image_size=cfg.data.image_size, augment=cfg.data.augment, wrist_camera_keys=src.wrist_camera_keys,
        instruction=src.instruction, state_mode=expert.state_mode, state_bins=expert.state_bins,
        transform=ActionTransform.from_source(src), fast=fast,
        subtask_key=src.subtask_key,
    )


def _web_stream(src: DataSource, cfg, prompts: PromptBuilder, dp_rank: int, dp_world_size: int, source_id: int,
                stream_id: int, num_streams: int) -> WebStream:
    del num_streams  # datasets splits by rank here and by worker itself
    packer = Packer(cfg.data.max_seq_len, prompts.vision_start_id, cfg.data.packing)
    stream = WebStream(src.kind, src.path, src.split, src.name, source_id, prompts, packer, dp_rank, dp_world_size,
                       cfg.data.strict, src.image_fetch_fn, counts_bad_files=stream_id == 0)
    # datasets gives each loader worker whole shards; a worker without one would never yield.
    if stream.ds.n_shards < cfg.data.num_workers:
        raise ValueError(f"data source '{src.name}' has {stream.ds.n_shards} shard(s) per rank, fewer than "
                         f"data.num_workers={cfg.data.num_workers}: split it into more files (or row groups)")
    return stream


def _mixture(cfg, split: str) -> dict[str, float]:
    weights = cfg.data.mixture if split == "train" else cfg.data.validation_mixture
    if split != "train" and not weights:
        raise ValueError(f"split '{split}' needs data.validation_mixture")
    return dict(weights) if weights else {s.name: 1.0 for s in cfg.data.sources}


def build_dataloader(cfg, tokenizer, dp_rank: int, dp_world_size: int, split: str = "train") -> VLADataLoader:
    """The data loader of this rank: samples of ``cfg.data``'s mixture collated into ``Batch``es.

    Source names, kinds and the mixture's names were checked when the config loaded. Every source named
    by the mixture is opened once here, so an unreadable file, feature key or stats entry is an error at
    start-up that names it (workers reopen the sources in their own processes).
    """
    by_name = {src.name: src for src in cfg.data.sources}
    weights = _mixture(cfg, split)
    names = [n for n in weights if weights[n] > 0]
    from ..models.vla.build import fast_actions  # noqa: PLC0415 (models import the data contract)

    workers = cfg.data.num_workers
    prompts = PromptBuilder(tokenizer, cfg.data, compact_pixels=workers > 0)
    fast = fast_actions(cfg.model, tokenizer)
    factories = []
    for source_id, name in enumerate(names):
        src = by_name[name]
        if src.kind == "lerobot":
            # Loaded once here (workers inherit the arrays); the video decoders open lazily per process.
            builder = _robot_builder(src, cfg, prompts, fast)
            make = functools.partial(RobotStream, builder, name=src.name, seed=cfg.job.seed, strict=cfg.data.strict)
        else:
            make = functools.partial(_web_stream, src, cfg, prompts, dp_rank, dp_world_size)
        # Validate paths, keys and sizes now, with as many streams as the workers will split it into.
        make(source_id, stream_id=dp_rank, num_streams=dp_world_size * max(1, cfg.data.num_workers))
        factories.append(make)
    dataset = MixtureDataset(names, factories, [weights[n] for n in names], cfg.job.seed, dp_rank, dp_world_size)
    expert = cfg.action_expert
    collate = Collator(tokenizer.pad_id, cfg.data.max_seq_len, expert.action_horizon, expert.max_action_dim,
                       expert.max_state_dim, len(names), cfg.data.pad_to_max_seq_len)
    return VLADataLoader(
        dataset, names,
        batch_size=cfg.training.local_batch_size,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init if workers > 0 else None,
        in_order=True,
        # Starting an iterator draws a base seed; from its own generator it leaves the trainer's torch RNG
        # (flow noise and times) untouched, so a resumed run draws the same noise as an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.job.seed),
    )
