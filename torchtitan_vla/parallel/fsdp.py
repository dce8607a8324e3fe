"""FSDP2 (``fully_shard``) settings shared by every component plan."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from torchtitan_vla.config.parallel import ReshardPolicy

from .entry_points import entry_points

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype of a configured precision name (the configuration's Literal guarantees the name)."""
    return _DTYPES[name]


@dataclass
class FSDPSettings:
    """What every ``fully_shard`` call of one model gets."""

    mesh: DeviceMesh
    mp_policy: MixedPrecisionPolicy
    reshard_policy: ReshardPolicy = "default"

    def reshard_blocks(self) -> bool:
        """Blocks free their gathered parameters after forward unless the policy is ``never``."""
        return self.reshard_policy != "never"

    def reshard_last(self) -> bool:
        """The unit that runs last in forward (final norm + head) is needed again at once in backward,
        so resharding it would only force another all-gather; ``always`` does it anyway to save memory."""
        return self.reshard_policy == "always"

    def shard(self, modules: nn.Module | list[nn.Module], reshard_after_forward: bool) -> None:
        fully_shard(modules, mesh=self.mesh, mp_policy=self.mp_policy, reshard_after_forward=reshard_after_forward)
        if isinstance(modules, nn.Module):
            # Entry points other than forward gather and reshard the unit's parameters too.
            for name in entry_points(modules):
                if name != "forward":
                    register_fsdp_forward_method(modules, name)


def mixed_precision(param_dtype: str, reduce_dtype: str, device_type: str) -> MixedPrecisionPolicy:
    """Compute/communication dtypes of ``fully_shard``. Master weights stay float32 in every case.

    On CPU everything is float32: bf16 matmuls are slow there, and the CPU runs are the numerical
    reference (the 2-rank vs 1-process tests compare fp32 losses to 1e-4).
    """
    param = dtype_from_name(param_dtype)
    reduce = dtype_from_name(reduce_dtype)
    if device_type == "cpu":
        param = reduce = torch.float32
    return MixedPrecisionPolicy(param_dtype=param, reduce_dtype=reduce)


def disable_gradient_division(model: nn.Module) -> None:
    """Make FSDP sum gradients over data-parallel ranks instead of averaging them.

    The loss is already divided by the global (all-reduced) count of tokens / action elements, so the
    summed gradients are exactly the gradient of the global loss. A divide factor of 1 alone makes
    FSDP reduce-scatter with ``PREMUL_SUM(1.0)``, which gloo lacks; forcing plain SUM is the same
    arithmetic, works on gloo and NCCL, and lets NCCL use its zero-copy SUM path.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
