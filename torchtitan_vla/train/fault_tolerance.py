"""The trainer's side of ``[fault_tolerance]``: one ``ReplicaGroup`` driven by the step loop.

Per step: ``start_step`` asks the lighthouse for a quorum before the first forward pass (a group that
is behind heals here from a live one and the stage step is set from the job's step), the gradients are
averaged over the groups (FSDP's all-reduce hook, or ``after_backward`` for a plain module), and
``should_commit`` is the groups' vote on the step: a dropped step leaves the optimizer, EMA and LR
schedule untouched and is redone with the next quorum. Each group reads its own share of the data:
shard ``replica_id * dp + dp_rank`` of ``group_size * dp``. Every method is a no-op when disabled.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchtitan_vla.config.fault_tolerance import FaultTolerance
from torchtitan_vla.parallel.fault_tolerance import ReplicaGroup
from torchtitan_vla.utils.logging import logger

from .train_state import TrainState


class TrainerReplicas:
    def __init__(self, cfg: FaultTolerance, device_type: str):
        self.cfg = cfg
        self.group = ReplicaGroup(cfg, device_type) if cfg.enable else None
        self.plain_model: nn.Module | None = None
        self.stage_index = -1
        self.states: dict[str, Any] = {}

    def data_shard(self, dp_rank: int, dp_world: int) -> tuple[int, int]:
        """(shard, shards) this rank reads: the groups split the data like one larger data-parallel job."""
        if self.group is None:
            return dp_rank, dp_world
        return self.cfg.replica_id * dp_world + dp_rank, self.cfg.group_size * dp_world

    def attach(self, model: nn.Module) -> None:
        """After parallelize: average over the groups in FSDP's hook, else after backward."""
        if self.group is not None and self.group.hook_fsdp(model) == 0:
            self.plain_model = model

    def track(self, stage_index: int, states: dict[str, Any]) -> None:
        """The stage's stateful objects (the checkpoint's), which a restarted group copies from a live one."""
        if self.group is None:
            return
        first = not self.states
        self.stage_index, self.states = stage_index, states
        if first:  # torchft registers a name once; the stage's objects are looked up when sent or loaded
            self.group.track("trainer", self._load_state_dict, self._state_dict)

    def _state_dict(self) -> dict[str, Any]:
        return {"stage_index": self.stage_index, **{name: s.state_dict() for name, s in self.states.items()}}

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if state["stage_index"] != self.stage_index:
            raise RuntimeError(
                f"fault_tolerance: the live replica groups are in stage {state['stage_index'] + 1}, this restarted "
                f"group in stage {self.stage_index + 1}; a group can rejoin only within its stage (restart it with "
                "curriculum.only_stage or from a checkpoint of that stage)"
            )
        for name, s in self.states.items():
            s.load_state_dict(state[name])

    def set_step(self, job_step: int) -> None:
        """The job's step where this stage starts or resumes (a skipped stage, a checkpoint): the quorum
        compares the groups' steps, and a group that is behind heals."""
        if self.group is not None:
            self.group.set_step(job_step)

    def start_step(self, stage_offset: int, state: TrainState) -> None:
        """Quorum before the step's forward pass; the stage step follows the job's (a heal jumps it)."""
        if self.group is None:
            return
        before = state.stage_step
        self.group.start_quorum()
        state.stage_step = self.group.step - stage_offset
        if state.stage_step != before:
            logger.info(f"fault_tolerance: healed from a live replica group, now at step {self.group.step}")

    def after_backward(self) -> None:
        if self.plain_model is not None:
            self.group.average_gradients(self.plain_model)

    def should_commit(self) -> bool:
        """Every rank of every group in the quorum agrees the step is good (always true when disabled)."""
        return self.group is None or self.group.should_commit()

    def shutdown(self) -> None:
        if self.group is not None:
            self.group.shutdown()
