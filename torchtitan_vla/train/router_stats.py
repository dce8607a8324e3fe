"""The MoE router's load-balancing loss (Qwen3-MoE's auxiliary loss) as a logged metric.

Each MoE layer leaves the routing statistics of its last forward (``MoE.routing_stats``); ``RouterStats``
reads them after every micro-batch's forward (before backward, so a recomputed checkpointed layer is never
counted twice), sums them over the step's micro-batches and layers, and at log time over the data-parallel
ranks: the logged loss is that of the step's global batch, all MoE layers' tokens taken together as
transformers' ``load_balancing_loss_func`` takes them, whatever the layout (with expert parallelism each
rank routes its own tokens before they are dispatched, so the statistics are the same as without it). The
metric is logged only; the training loss does not include it.
"""

from __future__ import annotations

import torch
from torch import nn

from torchtitan_vla.models.qwen3_vl.decoder import load_balancing_loss_of
from torchtitan_vla.parallel.expert_parallel import moe_layers
from torchtitan_vla.utils.distributed import all_reduce_sum


class RouterStats:
    def __init__(self, model: nn.Module):
        self.layers = moe_layers(model)
        self.total: torch.Tensor | None = None

    def observe(self, model):
        """``model`` as ``forward_backward`` calls it, adding each forward's statistics to the step's."""
        if not self.layers:
            return model

        def run(batch, options):
            out = model(batch, options=options)
            stats = sum(layer.routing_stats for layer in self.layers)
            self.total = stats if self.total is None else self.total + stats
            return out

        return run

    def reset(self) -> None:
        """Start a new step."""
        self.total = None

    def report(self, dp_mesh) -> dict[str, float]:
        """``moe/load_balancing_loss`` and ``moe/max_expert_load`` (the busiest expert's routed tokens over
        the mean) of the last step's global batch; empty without MoE layers. A collective over ``dp_mesh``."""
        if self.total is None:
            return {}
        total = all_reduce_sum(self.total, dp_mesh)
        pairs = total[0]
        return {"moe/load_balancing_loss": float(load_balancing_loss_of(total, self.layers[0].top_k)),
                "moe/max_expert_load": float(pairs.max() / pairs.mean())}
