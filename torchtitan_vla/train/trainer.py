"""The training loop: build once, then run the curriculum's stages in order.

Per job: process group and mesh, model on meta -> parallelize -> materialise (init or load), the
checkpoint manager, metrics sinks. Per stage: trainable parts, AdamW groups, LR schedule, data
mixture, loss weights, (EMA). Per step: micro-batches (gradient accumulation) normalized by globally
all-reduced target counts, global-norm clipping, a non-finite guard, then logging, validation,
checkpointing and the preemption check at the step boundary.
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from torchtitan_vla.config import ConfigError, LoadedConfig, ResolvedStage, config_to_dict
from torchtitan_vla.parallel.grad_norm import clip_grad_norm_
from torchtitan_vla.parallel.loss import global_counts, normalize_loss
from torchtitan_vla.parallel.parallel_dims import ParallelDims
from torchtitan_vla.parallel.weights import init_on_device
from torchtitan_vla.utils import distributed as dist_utils
from torchtitan_vla.utils.logging import logger

from .checkpoint import CheckpointInfo, CheckpointManager, ModelState, OptimizerState, check_complete
from .curriculum import StagePlan, check_components_cover, plan_stages, resume_index, seed_stage
from .ema import EMA
from .export import export_policy
from .flops import FlopCounter, peak_flops_per_device
from .losses import COUNT_KEYS, LOSS_TERMS, batch_counts, check_counts, loss_sums, move_to
from .lr_schedule import StageLRScheduler
from .metrics import MetricsLogger, console_line, peak_memory
from .optimizer import build_optimizer
from .report import write_report
from .signals import PreemptionHandler
from .spec import TrainSpec


class Preempted(Exception):
    """A preemption signal was handled: the state is saved and the job should exit 0."""


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class _Stage:
    """Everything that lives for one stage."""

    def __init__(self, plan: StagePlan):
        self.plan = plan
        self.cfg = plan.stage.config
        self.step = 0  # optimizer steps done in this stage
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: StageLRScheduler | None = None
        self.ema: EMA | None = None
        self.dataloader = None
        self.data_iter = None


class Trainer:
    def __init__(self, loaded: LoadedConfig, stages: list[ResolvedStage], spec: TrainSpec):
        self.base_cfg = cfg = loaded.config
        self.spec = spec
        self.plans = plan_stages(stages, cfg.curriculum.only_stage, cfg.curriculum.skip_stages)
        self.device = dist_utils.init_distributed()
        self.rank = dist_utils.rank()
        self.world_size = dist_utils.world_size()
        self.parallel_dims = ParallelDims.from_config(cfg.parallelism, device_type=self.device.type)
        self.dp_mesh = self.parallel_dims.dp_mesh
        self.run_folder = Path(cfg.job.dump_folder) / cfg.job.name
        if cfg.job.deterministic:
            torch.use_deterministic_algorithms(True)

        if cfg.model.load_hf_weights:
            _hf_folder(cfg.model.hf_assets_path, "model.hf_assets_path")
        torch.manual_seed(cfg.job.seed)
        self.tokenizer = spec.build_tokenizer(cfg)
        with torch.device("meta"):
            self.model = spec.build_model(cfg, self.tokenizer)
        self.components: dict[str, nn.Module] = self.model.components()
        check_components_cover(self.model, self.components)
        spec.parallelize(self.model, self.parallel_dims, cfg)
        init_on_device(self.model, self.device)
        self.model.train()

        self.checkpointer = CheckpointManager(self.run_folder / cfg.checkpoint.folder, cfg.checkpoint)
        self.metrics = MetricsLogger(
            self.run_folder,
            cfg.metrics,
            config_dict=config_to_dict(cfg),
            run_name=cfg.job.name,
            group=cfg.curriculum.name or cfg.job.name,
            rank=self.rank,
        )
        self.flops = FlopCounter(self.components)
        self.peak_flops = peak_flops_per_device(self.device, cfg.metrics.peak_flops)
        self.preemption = PreemptionHandler()
        self.nonfinite_skipped = 0
        self.nonfinite_in_a_row = 0
        self.total_steps = self.plans[-1].end
        self._job_steps = sum(p.stage.steps for p in self.plans)
        self._steps_run = 0
        self._time_trained = 0.0
        self._window: dict[str, float] = {}
        self._reset_window()

    # ============================================================================================ job
    def run(self) -> None:
        cfg = self.base_cfg
        resume = self.checkpointer.find_resume(cfg.checkpoint.load_step) if cfg.checkpoint.enable else None
        if cfg.checkpoint.load_step >= 0 and not cfg.checkpoint.enable:
            raise ConfigError("checkpoint.load_step is set but checkpoint.enable is false")
        start = 0
        if resume is not None:
            start = resume_index(self.plans, resume.meta, str(resume.path))
            self._check_world(resume)
            logger.info(f"resuming from {resume.path} (stage '{resume.meta['stage']}', step {resume.step})")
        else:
            self._initial_load()
        gc.disable()  # collected every training.gc_freq steps instead, at the same point on every rank
        try:
            for i in range(start, len(self.plans)):
                self._run_stage(self.plans[i], resume if i == start else None)
            self.checkpointer.wait()
            self._export()
            if self.rank == 0:
                write_report(self.plans[-1].stage.config, self.run_folder, self.run_folder / cfg.checkpoint.export_folder)
            dist_utils.barrier()
        finally:
            gc.enable()

    def close(self) -> None:
        self.checkpointer.close()
        self.metrics.close()
        self.preemption.restore()

    def _check_world(self, resume: CheckpointInfo) -> None:
        saved = resume.meta.get("dp_world_size")
        if saved != self.parallel_dims.dp_world_size:
            raise ConfigError(
                f"checkpoint {resume.path} was written with {saved} data-parallel ranks, this job has "
                f"{self.parallel_dims.dp_world_size}: the data-loader state cannot be resharded"
            )

    def _initial_load(self) -> None:
        """No checkpoint in the run folder: optionally initialise the model from elsewhere."""
        ck, model_cfg = self.base_cfg.checkpoint, self.base_cfg.model
        if model_cfg.load_hf_weights:
            if ck.initial_load_path:
                raise ConfigError(
                    "model.load_hf_weights and checkpoint.initial_load_path both name initial weights; "
                    "set only one"
                )
            self._load_hf(_hf_folder(model_cfg.hf_assets_path, "model.hf_assets_path"))
            logger.info(f"VLM initialised from the Hugging Face weights in {model_cfg.hf_assets_path}")
            return
        if not ck.initial_load_path:
            return
        if not ck.initial_load_model_only:
            raise ConfigError(
                "checkpoint.initial_load_model_only=false is not supported: to resume a run with its "
                "optimizer and data state, point job.dump_folder/job.name at that run"
            )
        path = Path(ck.initial_load_path)
        if ck.initial_load_format == "hf":
            self._load_hf(_hf_folder(ck.initial_load_path, "checkpoint.initial_load_path"))
        elif ck.initial_load_format == "dcp":
            reason = check_complete(path)
            if reason is not None:
                raise FileNotFoundError(f"checkpoint.initial_load_path: {path} is not a usable checkpoint ({reason})")
            CheckpointManager.load(path, {"model": ModelState(self.model)})
        else:
            raise ConfigError(f"checkpoint.initial_load_format must be 'dcp' or 'hf', got {ck.initial_load_format!r}")
        logger.info(f"model initialised from {path} ({ck.initial_load_format}, model only)")

    def _load_hf(self, folder: Path) -> None:
        """The VLM part from HF safetensors into the materialised (sharded) model; the rest keeps its init."""
        if self.spec.load_hf_weights is None:
            raise ConfigError("loading Hugging Face weights is not supported by this model")
        self.spec.load_hf_weights(self.model, str(folder))

    # ========================================================================================== stage
    def _run_stage(self, plan: StagePlan, resume: CheckpointInfo | None) -> None:
        st = self._begin_stage(plan)
        if resume is not None:
            self._load_full(st, resume)
        cfg = st.cfg
        name, steps = plan.stage.name, plan.stage.steps
        if st.step < steps:
            logger.info(
                f"stage {plan.stage.index + 1} '{name}': steps {plan.offset + st.step + 1}-{plan.end}, "
                f"trainable {cfg.training.trainable}, mixture {cfg.data.mixture or 'all sources'}"
            )
        saved_at = resume.step if resume is not None else -1
        while st.step < steps:
            st.step += 1
            step = plan.offset + st.step
            if cfg.training.debug_sigkill_at_step == step and self.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            with self._maybe_profile(step):
                record = self._train_step(st, step)
            if step % cfg.metrics.log_freq == 0 or st.step == 1 or st.step == steps:
                self._log(st, step, record)
            if cfg.training.validation_freq > 0 and step % cfg.training.validation_freq == 0:
                self._validate(st, step)
            if cfg.training.gc_freq > 0 and step % cfg.training.gc_freq == 0:
                gc.collect(1)
            final = st.step == steps
            if cfg.checkpoint.enable and (step % cfg.checkpoint.interval == 0 or final):
                self._save(st, step, final)
                saved_at = step
            if self.preemption.should_stop(self.device):
                if saved_at != step and cfg.checkpoint.enable:
                    self._save(st, step, final)
                self.checkpointer.wait()
                logger.info(f"preempted: state saved at step {step}; exiting with code 0 so the job can be requeued")
                raise Preempted()
        self.last_stage = st

    def _begin_stage(self, plan: StagePlan) -> _Stage:
        st = _Stage(plan)
        cfg = st.cfg
        seed_stage(cfg.job.seed, plan.stage.index, self.rank)
        self.model.set_trainable(cfg.training.trainable)
        st.optimizer = build_optimizer(self.components, cfg.optimizer)
        st.scheduler = StageLRScheduler(st.optimizer, cfg.lr_schedule, plan.stage.steps)
        if cfg.training.ema_decay > 0:
            st.ema = EMA(self.model, cfg.training.ema_decay)
        self.accumulation = self._accumulation_steps(cfg)
        st.dataloader = self.spec.build_dataloader(
            cfg, self.tokenizer, self.parallel_dims.dp_rank, self.parallel_dims.dp_world_size, "train"
        )
        if cfg.training.validation_freq > 0 and not cfg.data.validation_mixture:
            raise ConfigError("training.validation_freq > 0 needs data.validation_mixture (the held-out sources)")
        self.nonfinite_in_a_row = 0
        return st

    def _accumulation_steps(self, cfg) -> int:
        local, dp = cfg.training.local_batch_size, self.parallel_dims.dp_world_size
        if cfg.training.global_batch_size <= 0:
            return 1
        if cfg.training.global_batch_size % (local * dp):
            raise ConfigError(
                f"training.global_batch_size={cfg.training.global_batch_size} must be a multiple of "
                f"training.local_batch_size={local} x {dp} data-parallel ranks"
            )
        return cfg.training.global_batch_size // (local * dp)

    # ========================================================================================== step
    def _next_batch(self, st: _Stage) -> dict:
        """The next micro-batch as the loader made it (on the CPU)."""
        if st.data_iter is None:
            st.data_iter = iter(st.dataloader)
        try:
            batch = next(st.data_iter)
        except StopIteration:
            logger.info("data loader exhausted: starting a new pass")
            st.data_iter = iter(st.dataloader)
            batch = next(st.data_iter)
        return batch

    def _train_step(self, st: _Stage, step: int) -> dict:
        cfg = st.cfg.training
        t0 = time.perf_counter()
        host_batches = [self._next_batch(st) for _ in range(self.accumulation)]
        t_data = time.perf_counter() - t0
        # Throughput figures from the host copies: read on the device they would sync every step.
        throughput = self._throughput_counts(st, host_batches)
        microbatches = [move_to(mb, self.device) for mb in host_batches]
        local = {t: sum(batch_counts(mb)[t] for mb in microbatches) for t in LOSS_TERMS}
        counts = global_counts(local, self.dp_mesh)
        weights = {"text": cfg.text_loss_weight, "action": cfg.action_loss_weight}
        sums = {t: torch.zeros((), device=self.device) for t in LOSS_TERMS}
        per_sample = []
        for i, mb in enumerate(microbatches):
            outputs = self.model(mb)
            mb_sums = loss_sums(outputs)
            if step == st.plan.offset + 1 and i == 0:
                check_counts(outputs, batch_counts(mb))
            loss = normalize_loss(mb_sums, counts, weights)
            if step in cfg.debug_inject_nonfinite_steps:
                loss = loss * float("nan")
            loss.backward()
            for t in LOSS_TERMS:
                sums[t] += mb_sums[t].detach().float()
            per_sample.append((mb, outputs))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = clip_grad_norm_(trainable, cfg.max_norm)
        finite = bool(torch.isfinite(grad_norm))  # global: every rank takes the same branch
        if finite:
            st.optimizer.step()
            if st.ema is not None:
                st.ema.update()
            self.nonfinite_in_a_row = 0
        else:
            self.nonfinite_skipped += 1
            self.nonfinite_in_a_row += 1
            logger.warning(
                f"step {step}: non-finite loss or gradient norm ({float(grad_norm)}); step skipped "
                f"({self.nonfinite_in_a_row} in a row, {self.nonfinite_skipped} in total)"
            )
        st.optimizer.zero_grad(set_to_none=True)
        lrs = {f"lr/{g['name']}": g["lr"] for g in st.optimizer.param_groups}
        st.scheduler.step()
        if not finite and self.nonfinite_in_a_row >= cfg.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"stopping at step {step}: {self.nonfinite_in_a_row} consecutive steps had a non-finite loss "
                f"or gradient norm (training.max_consecutive_nonfinite={cfg.max_consecutive_nonfinite}); "
                "lower the learning rate, check the data, or resume from an earlier checkpoint"
            )
        elapsed = time.perf_counter() - t0
        self._steps_run += 1
        self._time_trained += elapsed
        self._accumulate_window(throughput, elapsed, t_data)
        return {"sums": sums, "counts": counts, "weights": weights, "grad_norm": grad_norm, "lrs": lrs,
                "per_sample": per_sample}

    # ======================================================================================= metrics
    def _reset_window(self) -> None:
        self._window = {"steps": 0, "time": 0.0, "data": 0.0, "samples": 0.0, "tokens": 0.0, "flops": 0.0}

    def _throughput_counts(self, st: _Stage, host_batches: list[dict]) -> dict[str, float]:
        """Samples, tokens and model FLOPs of one step's micro-batches (plain numbers)."""
        counts = {"samples": 0.0, "tokens": 0.0, "flops": 0.0}
        for mb in host_batches:
            counts["samples"] += mb["input_ids"].shape[0]
            counts["tokens"] += float(mb["attention_mask"].sum()) if "attention_mask" in mb else mb["input_ids"].numel()
            counts["flops"] += sum(self.flops.batch_flops(mb, st.cfg.training.trainable).values())
        return counts

    def _accumulate_window(self, throughput: dict[str, float], elapsed: float, t_data: float) -> None:
        w = self._window
        w["steps"] += 1
        w["time"] += elapsed
        w["data"] += t_data
        for key, value in throughput.items():
            w[key] += value

    def _per_source(self, st: _Stage, per_sample: list) -> dict[str, float]:
        """Loss of each term per data source, when the model returns per-sample sums and counts."""
        names = list(getattr(st.dataloader, "source_names", []) or [])
        keys = [key for t in LOSS_TERMS for key in (f"{t}_loss_per_sample", f"{COUNT_KEYS[t]}_per_sample")]
        if not names or any(k not in out for _, out in per_sample for k in keys):
            return {}
        acc = torch.zeros(len(keys), len(names), dtype=torch.float64, device=self.device)
        for mb, out in per_sample:
            for row, key in enumerate(keys):
                acc[row].index_add_(0, mb["source_id"], out[key].detach().double())
        acc = dist_utils.all_reduce_sum(acc, self.dp_mesh)
        record = {}
        for j, name in enumerate(names):
            for i, t in enumerate(LOSS_TERMS):
                if acc[2 * i + 1, j] > 0:
                    record[f"loss_by_source/{name}/{t}"] = float(acc[2 * i, j] / acc[2 * i + 1, j])
        return record

    def _log(self, st: _Stage, step: int, out: dict) -> None:
        sums = torch.stack([out["sums"][t] for t in LOSS_TERMS]).double()
        window = torch.tensor([self._window[k] for k in ("samples", "tokens", "flops")], dtype=torch.float64,
                              device=self.device)
        reduced = dist_utils.all_reduce_sum(torch.cat([sums, window]), self.dp_mesh)
        counts = out["counts"]
        terms = {t: float(reduced[i] / counts[t].clamp(min=1)) for i, t in enumerate(LOSS_TERMS)}
        loss = sum(out["weights"][t] * terms[t] for t in LOSS_TERMS)
        samples, tokens, flops = (float(x) for x in reduced[len(LOSS_TERMS):])
        elapsed = max(self._window["time"], 1e-9)
        record: dict = {"stage": st.plan.stage.name, "loss": loss}
        record.update({f"loss/{t}": v for t, v in terms.items()})
        record.update(self._per_source(st, out["per_sample"]))
        record["grad_norm"] = float(out["grad_norm"])
        record.update(out["lrs"])
        record["throughput/samples_per_s"] = samples / elapsed
        record["throughput/tokens_per_s"] = tokens / elapsed
        record["throughput/tokens_per_s_per_device"] = tokens / elapsed / self.world_size
        record["flops_per_s_per_device"] = flops / elapsed / self.world_size
        record["mfu_pct"] = 100 * flops / elapsed / self.world_size / self.peak_flops if self.peak_flops else None
        record.update(peak_memory())
        record["time/step_s"] = elapsed / max(1, self._window["steps"])
        record["time/data_wait_fraction"] = self._window["data"] / elapsed
        record["nonfinite_skipped"] = self.nonfinite_skipped
        remaining = self._job_steps - self._steps_run
        eta = self._time_trained / max(1, self._steps_run) * remaining
        logger.info(console_line(record, step, self.total_steps, st.plan.stage.name, st.step, st.plan.stage.steps, eta))
        self.metrics.log(step, record)
        self._reset_window()

    # ==================================================================================== validation
    @torch.no_grad()
    def _validate(self, st: _Stage, step: int) -> None:
        cfg = copy.deepcopy(st.cfg)
        cfg.data.mixture = dict(cfg.data.validation_mixture)
        loader = self.spec.build_dataloader(
            cfg, self.tokenizer, self.parallel_dims.dp_rank, self.parallel_dims.dp_world_size, "validation"
        )
        sums = torch.zeros(2 * len(LOSS_TERMS), dtype=torch.float64, device=self.device)
        # Fixed noise, and the training RNG untouched: validations are comparable and resume stays exact.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(st.cfg.job.seed + 17)
            it = iter(loader)
            for _ in range(st.cfg.training.validation_steps):
                try:
                    mb = move_to(next(it), self.device)
                except StopIteration:
                    break
                outputs = self.model(mb)
                counts = batch_counts(mb)
                for i, t in enumerate(LOSS_TERMS):
                    sums[i] += outputs[f"{t}_loss_sum"].double()
                    sums[len(LOSS_TERMS) + i] += counts[t].double()
        sums = dist_utils.all_reduce_sum(sums, self.dp_mesh)
        n = len(LOSS_TERMS)
        terms = {t: float(sums[i] / sums[n + i].clamp(min=1)) for i, t in enumerate(LOSS_TERMS)}
        w = {"text": st.cfg.training.text_loss_weight, "action": st.cfg.training.action_loss_weight}
        record = {"stage": st.plan.stage.name, "val/loss": sum(w[t] * terms[t] for t in LOSS_TERMS)}
        record.update({f"val/loss/{t}": v for t, v in terms.items()})
        logger.info(f"validation at step {step}: loss {record['val/loss']:.4f} "
                    + " ".join(f"{t} {v:.4f}" for t, v in terms.items()))
        self.metrics.log(step, record)

    # =================================================================================== checkpoints
    def _state(self, st: _Stage) -> dict:
        state = {
            "model": ModelState(self.model),
            "optimizer": OptimizerState(self.model, st.optimizer),
            "lr_scheduler": st.scheduler,
            "train_state": {
                "stage_step": st.step,
                "nonfinite_skipped": self.nonfinite_skipped,
                "nonfinite_in_a_row": self.nonfinite_in_a_row,
            },
        }
        if st.ema is not None:
            state["ema"] = st.ema
        return state

    def _rank_state(self, st: _Stage) -> dict:
        from .rng import rng_state

        blob = pickle.dumps({"dataloader": st.dataloader.state_dict(), "rng": rng_state()})
        return {f"rank{self.rank}": blob}

    def _save(self, st: _Stage, step: int, final: bool) -> None:
        state = self._state(st)
        state["rank_state"] = self._rank_state(st)
        meta = {
            "stage": st.plan.stage.name,
            "stage_index": st.plan.stage.index,
            "stage_step": st.step,
            "stage_final": final,
            "world_size": self.world_size,
            "dp_world_size": self.parallel_dims.dp_world_size,
        }
        self.checkpointer.save(step, state, meta)

    def _load_full(self, st: _Stage, resume: CheckpointInfo) -> None:
        from .rng import set_rng_state

        state = self._state(st)
        key = f"rank{self.rank}"
        state["rank_state"] = {key: b""}
        configured = [(g["peak_lr"], g["weight_decay"]) for g in st.optimizer.param_groups]
        CheckpointManager.load(resume.path, state)
        ts = state["train_state"]
        st.step = int(ts["stage_step"])
        self.nonfinite_skipped = int(ts["nonfinite_skipped"])
        self.nonfinite_in_a_row = int(ts["nonfinite_in_a_row"])
        # The configured peak LRs win over the saved ones, so a resumed job can change them.
        for group, (peak_lr, weight_decay) in zip(st.optimizer.param_groups, configured):
            group["peak_lr"], group["weight_decay"] = peak_lr, weight_decay
        st.scheduler.apply()
        blob = pickle.loads(state["rank_state"][key])
        st.dataloader.load_state_dict(blob["dataloader"])
        # Creating the iterator draws a seed from the torch RNG; in the saved run that draw happened
        # before the RNG state was captured, so it must happen before the state is restored here too.
        st.data_iter = iter(st.dataloader)
        set_rng_state(blob["rng"])

    # ======================================================================================== export
    def _export(self) -> None:
        ck = self.base_cfg.checkpoint
        st = getattr(self, "last_stage", None)
        if st is None or not (ck.export_policy or ck.export_hf):
            return
        folder = self.run_folder / ck.export_folder
        with st.ema.swapped_in() if st.ema is not None else nullcontext():
            if ck.export_policy:
                tokenizer_file = self.spec.tokenizer_file(st.cfg) if self.spec.tokenizer_file else ""
                export_policy(self.model, st.cfg, folder / "policy", tokenizer_file, ck.export_dtype)
            if ck.export_hf:
                if self.spec.export_hf is None:
                    raise ConfigError("checkpoint.export_hf is not supported by this model")
                self.spec.export_hf(self.model, st.cfg, folder / "hf")
                logger.info(f"exported the VLM in Hugging Face format to {folder / 'hf'}")

    # ======================================================================================= profile
    def _maybe_profile(self, step: int):
        if step not in self.base_cfg.metrics.profile_steps:
            return nullcontext()
        return _StepProfiler(self.run_folder / "profile", step, self.rank)


def _hf_folder(path: str, key: str) -> Path:
    """The HF checkpoint folder named by config ``key``; config.json and safetensors are checked by the loaders."""
    if not path:
        raise ConfigError(f"{key} must name a local Hugging Face Qwen3-VL folder")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{key}: no folder {path}")
    return Path(path)


class _StepProfiler:
    """A torch.profiler trace of one step, written as a Chrome trace per rank."""

    def __init__(self, folder: Path, step: int, rank: int):
        self.path = folder / f"step-{step}-rank{rank}.json"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities, record_shapes=True)

    def __enter__(self):
        self.profiler.__enter__()
        return self

    def __exit__(self, *exc):
        self.profiler.__exit__(*exc)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.profiler.export_chrome_trace(str(self.path))
        logger.info(f"profiler trace written to {self.path}")
        return False
