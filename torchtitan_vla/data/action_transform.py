"""Per-source state/action transform: pick and reorder dimensions, and relative (delta) actions.

Robots name and order their dimensions differently and many policies learn joint targets relative to the
current state while the gripper stays absolute (openpi's ``DeltaActions``). ``ActionTransform`` is that
mapping for one source: training applies ``to_model`` before normalisation (so the statistics of
``scripts/compute_norm_stats.py`` describe the transformed values), serving applies ``to_robot`` after
un-normalising, so clients send and receive the robot's own absolute values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class ActionTransform:
    state_dims: list[int] = field(default_factory=list)
    """Dimensions of the stored state fed to the model, in model order; empty: all, as stored."""
    action_dims: list[int] = field(default_factory=list)
    """Dimensions of the stored action the model learns, in model order; empty: all, as stored."""
    delta_action_dims: list[int] = field(default_factory=list)
    """Positions in the selected action that the model learns relative to the state (action - state)."""
    delta_state_dims: list[int] = field(default_factory=list)
    """Position in the selected state each delta action dimension is relative to; empty: the same positions."""

    @classmethod
    def from_source(cls, src) -> ActionTransform:
        """The transform a ``DataSource`` configures (its fields carry the same names)."""
        return cls(list(src.state_dims), list(src.action_dims), list(src.delta_action_dims), list(src.delta_state_dims))

    @classmethod
    def from_dict(cls, raw: dict | None) -> ActionTransform:
        return cls(**{k: [int(v) for v in vs] for k, vs in (raw or {}).items()})

    def to_dict(self) -> dict[str, list[int]]:
        return asdict(self)

    @property
    def is_delta(self) -> bool:
        return bool(self.delta_action_dims)

    @property
    def _delta_state(self) -> list[int]:
        return self.delta_state_dims or self.delta_action_dims

    def widths(self, state_width: int, action_width: int) -> tuple[int, int]:
        """(state, action) widths the model sees for stored widths ``state_width``, ``action_width``."""
        return len(self.state_dims) or state_width, len(self.action_dims) or action_width

    def problems(self, state_width: int, action_width: int) -> list[tuple[str, str]]:
        """(field, problem) for every index out of range for the stored widths (empty: consistent)."""
        out = []
        model_state, model_action = self.widths(state_width, action_width)
        for name, dims, width, of in (("state_dims", self.state_dims, state_width, "the stored state"),
                                      ("action_dims", self.action_dims, action_width, "the stored action"),
                                      ("delta_action_dims", self.delta_action_dims, model_action, "the selected action"),
                                      ("delta_state_dims", self.delta_state_dims, model_state, "the selected state")):
            bad = [d for d in dims if d >= width]
            if bad:
                out.append((name, f"indices {bad} are out of range for the {width} dimensions of {of}"))
            if len(set(dims)) != len(dims):
                out.append((name, f"repeats an index: {dims}"))
        if self.delta_state_dims and len(self.delta_state_dims) != len(self.delta_action_dims):
            out.append(("delta_state_dims", f"has {len(self.delta_state_dims)} entries, delta_action_dims "
                                            f"{len(self.delta_action_dims)}: one state dimension per delta action"))
        return out

    def state(self, state: np.ndarray) -> np.ndarray:
        """The model's state (..., Ds') from the stored state (..., Ds)."""
        return state[..., self.state_dims] if self.state_dims else state

    def _actions(self, actions: np.ndarray) -> np.ndarray:
        return actions[..., self.action_dims] if self.action_dims else actions

    def to_model(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Stored absolute actions (H, Da) at stored state (Ds,) -> the model's actions (H, Da')."""
        out = np.array(self._actions(actions), np.float32)
        if self.is_delta:
            out[..., self.delta_action_dims] -= self.state(state)[..., self._delta_state]
        return out

    def to_robot(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Inverse of ``to_model``: the model's (un-normalised) actions -> absolute actions in the selected
        dimension order, given the stored state (Ds,) the chunk was predicted from."""
        out = np.array(actions, np.float32)
        if self.is_delta:
            out[..., self.delta_action_dims] += self.state(state)[..., self._delta_state]
        return out
