"""The training loop: build once, then run the curriculum's stages in order.

Per job (job-level configuration): process group and mesh, model on meta -> parallelize -> materialise
(init or load), the checkpoint manager, metrics sinks. Per stage (the stage's own data, optimizer,
lr_schedule and training sections): trainable parts, AdamW groups, LR schedule, data loader, validator,
loss weights and forward options, EMA. Per step: micro-batches through ``forward_backward`` (losses
normalised by globally reduced target counts), global-norm clipping, a non-finite guard, then logging,
validation, checkpointing and the preemption check at the step boundary.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from torchtitan_vla.config import ConfigError, JobConfig, LoadedConfig, ResolvedStage, config_to_dict
from torchtitan_vla.models.vla.options import FlowTimeDistribution, ForwardOptions, RTCPrefix
from torchtitan_vla.parallel.grad_norm import clip_grad_norm_
from torchtitan_vla.parallel.parallel_dims import ParallelDims
from torchtitan_vla.parallel.weights import init_on_device
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import logger

from .checkpoint import CheckpointInfo, CheckpointManager, ModelState, OptimizerState, check_complete, load_into
from .curriculum import StagePlan, check_components_cover, plan_stages, resume_index, seed_stage
from .ema import EMA
from .export import export_policy
from .fault_tolerance import TrainerReplicas
from .flops import FlopCounter, peak_flops_per_device
from .forward_backward import StepLosses, forward_backward
from .loss import LOSS_TERMS, LossWeights, weighted_total
from .lr_schedule import StageLRScheduler
from .metrics import MetricsLogger, console_line, peak_memory
from .optimizer import build_optimizer
from .profiling import maybe_profile
from .report import write_report
from .router_stats import RouterStats
from .run_lock import acquire_on_rank0
from .signals import PreemptionHandler
from .spec import TrainSpec
from .throughput import MetricsWindow
from .train_state import RankState, TrainState
from .validator import Validator


class Preempted(Exception):
    """A preemption signal was handled: the state is saved and the job should exit 0."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


def forward_options(cfg: JobConfig) -> ForwardOptions:
    """The stage's training-time model options (``[training]`` is stage-level)."""
    t = cfg.training
    flow_time = FlowTimeDistribution(t.flow_time_alpha, t.flow_time_beta, t.flow_time_scale, t.flow_time_offset)
    rtc = RTCPrefix(t.rtc_min_delay, t.rtc_max_delay, t.rtc_delay_distribution) if t.rtc_max_delay else None
    return ForwardOptions(knowledge_insulation=t.knowledge_insulation, flow_time=flow_time, rtc_prefix=rtc,
                          flow=t.action_loss_weight > 0)


def loss_weights(cfg: JobConfig) -> LossWeights:
    t = cfg.training
    return LossWeights(text=t.text_loss_weight, action=t.action_loss_weight, subtask=t.subtask_loss_weight,
                       fast=t.fast_loss_weight)


class Trainer:
    def __init__(self, loaded: LoadedConfig, stages: list[ResolvedStage], spec: TrainSpec):
        # Job-level sections are the same in every stage; they are read from the base configuration.
        self.job_config = cfg = loaded.config
        self.spec = spec
        self.plans = plan_stages(stages, cfg.curriculum.only_stage, cfg.curriculum.skip_stages)
        self.device = dist_utils.init_distributed()
        self.rank = dist_utils.rank()
        self.world_size = dist_utils.world_size()
        self.parallel_dims = ParallelDims.from_config(cfg.parallelism, device_type=self.device.type)
        self.dp_mesh = self.parallel_dims.dp_mesh
        self.replicas = TrainerReplicas(cfg.fault_tolerance, self.device.type)
        self.run_folder = Path(cfg.job.dump_folder) / cfg.job.name
        self.run_lock = acquire_on_rank0(self.run_folder, self.rank)  # before anything writes into the folder
        try:
            self._build(cfg, spec)
        except BaseException:
            self.run_lock.release()
            raise

    def _build(self, cfg: JobConfig, spec: TrainSpec) -> None:
        if cfg.job.deterministic:
            torch.use_deterministic_algorithms(True)

        torch.manual_seed(cfg.job.seed)
        self.tokenizer = spec.build_tokenizer(cfg)
        with torch.device("meta"):
            self.model = spec.build_model(cfg, self.tokenizer)
        self.components: dict[str, nn.Module] = self.model.components()
        check_components_cover(self.model, self.components)
        spec.parallelize(self.model, self.parallel_dims, cfg)
        self.replicas.attach(self.model)
        init_on_device(self.model, self.device)
        self.model.train()

        self.checkpointer = CheckpointManager(self.run_folder / cfg.checkpoint.folder, cfg.checkpoint)
        self.metrics = MetricsLogger(self.run_folder, cfg.metrics, config_dict=config_to_dict(cfg),
                                     run_name=cfg.job.name, group=cfg.curriculum.name or cfg.job.name, rank=self.rank)
        self.router_stats = RouterStats(self.model)
        self.flops = FlopCounter(self.components, spec.expert_layout(self.model) if spec.expert_layout else None)
        self.peak_flops = peak_flops_per_device(self.device, cfg.metrics.peak_flops)
        self.preemption = PreemptionHandler()
        self.train_state = TrainState()
        self.window = MetricsWindow()
        self.job_steps = sum(p.stage.steps for p in self.plans)
        self.steps_run = 0
        self.seconds_trained = 0.0

    def run(self) -> None:
        cfg = self.job_config
        start, resume = self._resume() if cfg.checkpoint.enable else (0, None)
        if resume is None:
            self._initial_load()
        gc.disable()  # collected every training.gc_freq steps instead, at the same point on every rank
        try:
            for i in range(start, len(self.plans)):
                resumed = resume is not None and i == start
                if not resumed:
                    self.begin_stage(self.plans[i])
                self._run_stage(self.plans[i], saved_at=resume.step if resumed else -1)
            self.checkpointer.wait()
            self._export()
            if self.rank == 0:
                write_report(cfg, self.run_folder, self.run_folder / cfg.checkpoint.export_folder)
            dist_utils.barrier()
        finally:
            gc.enable()

    def close(self) -> None:
        try:
            self.checkpointer.close()
            self.metrics.close()
            self.replicas.shutdown()
            self.preemption.restore()
        finally:
            self.run_lock.release()

    def _resume(self) -> tuple[int, CheckpointInfo | None]:
        """The newest checkpoint that loads, with its stage's objects built and restored: (plan index, it).

        Checksums reject damaged files before loading; a checkpoint that still fails to load (one written
        before checksums were recorded, or by incompatible code) is skipped with a warning naming it and the
        previous one is tried, unless ``checkpoint.load_step`` asked for exactly that one.
        """
        load_step = self.job_config.checkpoint.load_step
        failed: set[int] = set()
        while (resume := self.checkpointer.find_resume(load_step, frozenset(failed))) is not None:
            start = resume_index(self.plans, resume.meta, str(resume.path))
            self._check_world(resume)
            self.begin_stage(self.plans[start])
            error = self._try_restore(resume)
            if error is None:
                logger.info(f"resuming from {resume.path} (stage '{resume.meta['stage']}', step {resume.step})")
                return start, resume
            if load_step >= 0:
                raise ConfigError(f"checkpoint.load_step={load_step}: {resume.path} could not be loaded: {error}")
            logger.warning(f"checkpoint {resume.path} could not be loaded ({error}); falling back to an older one")
            failed.add(resume.step)
        if failed:  # a failed load may have filled part of the model: start again from the initialisation
            torch.manual_seed(self.job_config.job.seed)
            self.model.init_weights(buffer_device=self.device)
        return 0, None

    def _try_restore(self, resume: CheckpointInfo) -> str | None:
        """Restore ``resume`` into the tracked objects; the error on any rank, or None when every rank loaded."""
        error = None
        try:
            self._restore(resume)
        except Exception as err:  # noqa: BLE001 - any reader error means "this checkpoint is unusable"
            error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        errors = dist_utils.all_gather_object(error)
        return next((e for e in errors if e is not None), None)

    def _check_world(self, resume: CheckpointInfo) -> None:
        saved = resume.meta.get("dp_world_size")
        if saved != self.parallel_dims.dp_world_size:
            raise ConfigError(
                f"checkpoint {resume.path} was written with {saved} data-parallel ranks, this job has "
                f"{self.parallel_dims.dp_world_size}: the data-loader state cannot be resharded"
            )

    def _initial_load(self) -> None:
        """No checkpoint in the run folder: optionally initialise the model from elsewhere (the
        combinations were validated when the configuration loaded)."""
        ck, model_cfg = self.job_config.checkpoint, self.job_config.model
        hf_folder = model_cfg.hf_assets_path if model_cfg.load_hf_weights else ""
        if ck.initial_load_path and ck.initial_load_format == "hf":
            hf_folder = ck.initial_load_path
        if hf_folder:
            if self.spec.load_hf_weights is None:
                raise ConfigError("loading Hugging Face weights is not supported by this model")
            self.spec.load_hf_weights(self.model, hf_folder)
            logger.info(f"VLM initialised from the Hugging Face weights in {hf_folder}")
        elif ck.initial_load_path:
            reason = check_complete(Path(ck.initial_load_path))
            if reason is not None:
                raise FileNotFoundError(
                    f"checkpoint.initial_load_path: {ck.initial_load_path} is not a usable checkpoint ({reason})"
                )
            load_into(Path(ck.initial_load_path), {"model": ModelState(self.model)})
            logger.info(f"model initialised from {ck.initial_load_path} (dcp, model only)")

    def _run_stage(self, plan: StagePlan, saved_at: int) -> None:
        """The stage's remaining steps (its objects are built; restored when resuming at ``saved_at``)."""
        cfg, state = self.stage_config, self.train_state
        steps = plan.stage.steps
        if state.stage_step < steps:
            logger.info(
                f"stage {plan.stage.index + 1} '{plan.stage.name}': steps {plan.offset + state.stage_step + 1}-"
                f"{plan.end}, trainable {cfg.training.trainable}, mixture {cfg.data.mixture or 'all sources'}"
            )
        job = self.job_config
        self.replicas.set_step(plan.offset + state.stage_step)
        while state.stage_step < steps:
            self.replicas.start_step(plan.offset, state)
            state.stage_step += 1
            step = plan.offset + state.stage_step
            if job.debug.sigkill_at_step == step and self.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            with maybe_profile(step, job.metrics.profile_steps, self.run_folder / "profile", self.rank):
                result = self._train_step(step)
            if result is None:  # dropped by the replica groups' vote: redone with the next quorum
                state.stage_step -= 1
                continue
            losses, grad_norm, lrs = result
            if step % job.metrics.log_freq == 0 or state.stage_step in (1, steps):
                self._log(step, losses, grad_norm, lrs)
            if cfg.training.validation_freq > 0 and step % cfg.training.validation_freq == 0:
                self._validate(step)
            if cfg.training.gc_freq > 0 and step % cfg.training.gc_freq == 0:
                gc.collect(1)
            final = state.stage_step == steps
            if job.checkpoint.enable and (step % job.checkpoint.interval == 0 or final):
                self._save(step, final)
                saved_at = step
            if self.preemption.should_stop(self.device):
                if saved_at != step and job.checkpoint.enable:
                    self._save(step, final)
                self.checkpointer.wait()
                logger.info(f"preempted: state saved at step {step}; exiting with code 0 so the job can be requeued")
                raise Preempted()

    def begin_stage(self, plan: StagePlan) -> None:
        """Everything that lives for one stage, built from the stage's own configuration."""
        self.plan = plan
        self.stage_config = cfg = plan.stage.config
        data_rank, data_world = self.replicas.data_shard(self.parallel_dims.dp_rank, self.parallel_dims.dp_world_size)
        seed_stage(self.job_config.job.seed, plan.stage.index, data_rank)  # same draws in a TP group
        self.model.set_trainable(cfg.training.trainable)
        self.optimizer = build_optimizer(self.components, cfg.optimizer)
        self.scheduler = StageLRScheduler(self.optimizer, cfg.lr_schedule, plan.stage.steps)
        self.ema = EMA(self.model, cfg.training.ema_decay) if cfg.training.ema_decay > 0 else None
        self.accumulation = self._accumulation_steps(cfg)
        self.weights, self.options = loss_weights(cfg), forward_options(cfg)
        dp_rank, dp_world = self.parallel_dims.dp_rank, self.parallel_dims.dp_world_size
        self.dataloader = self.spec.build_dataloader(cfg, self.tokenizer, data_rank, data_world, "train")
        self.rank_state = RankState(self.dataloader, self.rank)
        self.validator = None
        if cfg.training.validation_freq > 0:
            self.validator = Validator(self.spec.build_dataloader, cfg, self.tokenizer, dp_rank, dp_world,
                                       self.device, self.dp_mesh)
        self.train_state.stage_step = 0
        self.train_state.nonfinite_in_a_row = 0
        states = {
            "model": ModelState(self.model),
            "optimizer": OptimizerState(self.model, self.optimizer),
            "lr_scheduler": self.scheduler,
            "train_state": self.train_state,
            "rank_state": self.rank_state,
        }
        if self.ema is not None:
            states["ema"] = self.ema
        self.checkpointer.track(**states)
        self.replicas.track(plan.stage.index, states)

    def _accumulation_steps(self, cfg: JobConfig) -> int:
        """Micro-batches per optimizer step (the data-parallel size is known only now, not at load)."""
        local, dp = cfg.training.local_batch_size, self.parallel_dims.dp_world_size
        if cfg.training.global_batch_size <= 0:
            return 1
        if cfg.training.global_batch_size % (local * dp):
            raise ConfigError(
                f"training.global_batch_size={cfg.training.global_batch_size} must be a multiple of "
                f"training.local_batch_size={local} x {dp} data-parallel ranks"
            )
        return cfg.training.global_batch_size // (local * dp)

    def _train_step(self, step: int) -> tuple[StepLosses, torch.Tensor, dict[str, float]] | None:
        cfg = self.stage_config.training
        t0 = time.perf_counter()
        host_batches = [self.rank_state.next_batch() for _ in range(self.accumulation)]
        data_seconds = time.perf_counter() - t0
        poisoned = step in self.job_config.debug.inject_nonfinite_steps
        self.router_stats.reset()
        losses = forward_backward(
            self.router_stats.observe(self.model), [b.to(self.device, non_blocking=True) for b in host_batches], weights=self.weights,
            options=self.options, dp_mesh=self.dp_mesh, num_sources=len(self.dataloader.source_names),
            loss_scale=float("nan") if poisoned else 1.0,
        )
        self.replicas.after_backward()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = clip_grad_norm_(trainable, cfg.max_norm)
        finite = bool(torch.isfinite(grad_norm))  # global: every rank takes the same branch
        state = self.train_state
        if not self.replicas.should_commit():
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if finite:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update()
            state.nonfinite_in_a_row = 0
        else:
            state.nonfinite_skipped += 1
            state.nonfinite_in_a_row += 1
            logger.warning(
                f"step {step}: non-finite loss or gradient norm ({float(grad_norm)}); step skipped "
                f"({state.nonfinite_in_a_row} in a row, {state.nonfinite_skipped} in total)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        lrs = {f"lr/{g['name']}": g["lr"] for g in self.optimizer.param_groups}
        self.scheduler.step()
        if not finite and state.nonfinite_in_a_row >= cfg.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"stopping at step {step}: {state.nonfinite_in_a_row} consecutive steps had a non-finite loss "
                f"or gradient norm (training.max_consecutive_nonfinite={cfg.max_consecutive_nonfinite}); "
                "lower the learning rate, check the data, or resume from an earlier checkpoint"
            )
        seconds = time.perf_counter() - t0
        self.steps_run += 1
        self.seconds_trained += seconds
        self.window.add_step(host_batches, self.flops, cfg.trainable, seconds, data_seconds)
        return losses, grad_norm, lrs

    def _log(self, step: int, losses: StepLosses, grad_norm: torch.Tensor, lrs: dict[str, float]) -> None:
        # Examples each source skipped in this stage so far (the loader's counts survive a resume), all ranks.
        skips = self.dataloader.skipped_per_source
        skipped = losses.by_source.new_tensor([skips[n] for n in self.dataloader.source_names])
        reduced = dist_utils.all_reduce_sum(torch.cat([skipped, losses.by_source.flatten()]), self.dp_mesh)
        skipped, by_source = reduced[: len(skipped)], reduced[len(skipped):].view_as(losses.by_source)
        terms = losses.term_losses(by_source[0::2].sum(dim=1))
        record: dict = {"stage": self.plan.stage.name, "loss": weighted_total(terms, self.weights)}
        record.update({f"loss/{t}": v for t, v in terms.items()})
        for j, name in enumerate(self.dataloader.source_names):
            for i, term in enumerate(LOSS_TERMS):
                if by_source[2 * i + 1, j] > 0:
                    record[f"loss_by_source/{name}/{term}"] = float(by_source[2 * i, j] / by_source[2 * i + 1, j])
        record["grad_norm"] = float(grad_norm)
        record.update(self.router_stats.report(self.dp_mesh))
        record.update(lrs)
        record.update(self.window.report(self.device, self.dp_mesh, self.world_size, self.peak_flops))
        record.update(peak_memory())
        record["nonfinite_skipped"] = self.train_state.nonfinite_skipped
        if skips:
            record.update({f"skipped/{n}": int(c) for n, c in zip(self.dataloader.source_names, skipped.tolist())})
        eta = self.seconds_trained / max(1, self.steps_run) * (self.job_steps - self.steps_run)
        stage = self.plan.stage
        logger.info(console_line(record, step, self.plans[-1].end, stage.name, self.train_state.stage_step,
                                 stage.steps, eta))
        self.metrics.log(step, record)

    def _validate(self, step: int) -> None:
        record = self.validator.run(self.model, self.weights, self.options)
        terms = " ".join(f"{t} {record[f'val/loss/{t}']:.4f}" for t in LOSS_TERMS)
        logger.info(f"validation at step {step}: loss {record['val/loss']:.4f} {terms}")
        self.metrics.log(step, {"stage": self.plan.stage.name, **record})

    def _save(self, step: int, final: bool) -> None:
        stage = self.plan.stage
        meta = {
            "stage": stage.name,
            "stage_index": stage.index,
            "stage_step": self.train_state.stage_step,
            "stage_final": final,
            "world_size": self.world_size,
            "dp_world_size": self.parallel_dims.dp_world_size,
        }
        self.checkpointer.save(step, meta)

    def _restore(self, resume: CheckpointInfo) -> None:
        configured = [(g["peak_lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        self.checkpointer.restore(resume.path)
        # The configured peak LRs win over the saved ones, so a resumed job can change them.
        for group, (peak_lr, weight_decay) in zip(self.optimizer.param_groups, configured):
            group["peak_lr"], group["weight_decay"] = peak_lr, weight_decay
        self.scheduler.apply()

    def _export(self) -> None:
        ck = self.job_config.checkpoint
        if not hasattr(self, "plan") or not (ck.export_policy or ck.export_hf):
            return
        folder = self.run_folder / ck.export_folder
        with self.ema.swapped_in() if self.ema is not None else nullcontext():
            if ck.export_policy:
                tokenizer_file = self.spec.tokenizer_file(self.stage_config) if self.spec.tokenizer_file else ""
                export_policy(self.model, self.stage_config, folder / "policy", tokenizer_file, ck.export_dtype)
            if ck.export_hf:
                self.spec.export_hf(self.model, self.stage_config, folder / "hf")
                logger.info(f"exported the VLM in Hugging Face format to {folder / 'hf'}")
