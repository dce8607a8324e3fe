"""Tensor parallelism (Megatron-style, through ``parallelize_module``) for every component.

Each decoder / expert / vision attention's q/k/v projections are split by heads (colwise) and its output
projection by rows, each MLP's up/gate projections colwise and its down projection rowwise: one all-reduce per attention and per
MLP in forward, one in backward. Heads are found from the local projection's width (the model splits
them with ``head_dim``), so attention runs on the local head counts without being told; the decoder's
KV heads and the joint expert's heads (the same head geometry) are split the same way, so the expert's
queries meet exactly the prefix keys of the heads they own.

No sequence parallelism anywhere: the vision encoder scatters its tokens into the decoder sequence and
DeepStack adds features at visual positions, both of which need the whole sequence on every rank.

Every other module with a forward (norms, the MoE router, embeddings, projectors, the expert's heads)
becomes a replicated DTensor module that takes and returns plain tensors (``Replicated``), so that all
parameters of a TP model are DTensors on the same mesh, which FSDP, gradient clipping and DCP expect.
Parameters read directly rather than through a forward (stacked MoE experts) stay plain tensors:
they are identical on every TP rank, and so are their gradients.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_module
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel, parallelize_module

from torchtitan_vla.models.action_expert.layers import ExpertLayer, JointLayer
from torchtitan_vla.models.action_expert.norms import AdaRMSNorm
from torchtitan_vla.models.qwen3_vl.decoder import Attention, FeedForward, MoE, RMSNorm
from torchtitan_vla.models.qwen3_vl.vision import VisionBlock
from torchtitan_vla.utils.distributed import local_tensor

REPLICATED_TYPES = (nn.Linear, nn.Embedding, nn.LayerNorm, RMSNorm, AdaRMSNorm)
"""Modules made ``Replicated`` when no plan split them (each is used through its forward)."""


def _to_dtensor(value, mesh: DeviceMesh, placement):
    if isinstance(value, DTensor) or not hasattr(value, "dim"):
        return value
    return DTensor.from_local(value, mesh, [placement], run_check=False)


def _to_local(value):
    if isinstance(value, tuple):
        return tuple(_to_local(v) for v in value)
    return local_tensor(value)


class Replicated(ParallelStyle):
    """Parameters replicated over the TP mesh; plain tensor inputs are read as ``input_placement``
    (``Replicate`` by default) and outputs come back as plain local tensors.

    ``Shard(dim)`` inputs are for modules applied per head to a colwise-split activation (QK-norm): the
    weight's gradient is then a sum over every rank's heads, which DTensor reduces in backward.
    """

    def __init__(self, input_placement=None):
        super().__init__()
        self.input_placement = input_placement or Replicate()

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        placement = self.input_placement

        def inputs(_module, args, mesh):
            return tuple(_to_dtensor(a, mesh, placement) for a in args)

        def outputs(_module, out, mesh):
            return _to_local(out)

        return distribute_module(module, device_mesh, None, inputs, outputs)


def _attention_plan(prefix: str) -> dict[str, ParallelStyle]:
    # q/k are (B, S, heads, head_dim) when normalised: the heads dimension (2) is the split one.
    return {
        f"{prefix}wq": ColwiseParallel(),
        f"{prefix}wk": ColwiseParallel(),
        f"{prefix}wv": ColwiseParallel(),
        f"{prefix}wo": RowwiseParallel(),
        f"{prefix}q_norm": Replicated(Shard(2)),
        f"{prefix}k_norm": Replicated(Shard(2)),
    }


def _mlp_plan(prefix: str) -> dict[str, ParallelStyle]:
    return {f"{prefix}w1": ColwiseParallel(), f"{prefix}w3": ColwiseParallel(), f"{prefix}w2": RowwiseParallel()}


def decoder_layer_plan(layer: nn.Module, prefix: str = "") -> dict[str, ParallelStyle]:
    """Plan of a decoder layer, an expert layer or a joint layer (both halves, the expert under ``expert.``)."""
    plan = _attention_plan(f"{prefix}attention.")
    if isinstance(layer.feed_forward, FeedForward):
        plan.update(_mlp_plan(f"{prefix}feed_forward."))
    elif isinstance(layer.feed_forward, MoE):
        # Expert weights stay whole here (expert parallelism splits them); the router is replicated.
        plan[f"{prefix}feed_forward.router"] = Replicated()
    if isinstance(layer, JointLayer):
        plan.update(decoder_layer_plan(layer.expert, f"{prefix}expert."))
    return plan


def vision_block_plan() -> dict[str, ParallelStyle]:
    # Heads split like the decoder's (q/k/v by heads, the output projection by rows), then the MLP.
    return {
        "attn.q_proj": ColwiseParallel(),
        "attn.k_proj": ColwiseParallel(),
        "attn.v_proj": ColwiseParallel(),
        "attn.proj": RowwiseParallel(),
        "mlp.linear_fc1": ColwiseParallel(),
        "mlp.linear_fc2": RowwiseParallel(),
    }


def block_plan(block: nn.Module) -> dict[str, ParallelStyle]:
    """The TP plan of one AC/FSDP block of any component."""
    if isinstance(block, VisionBlock):
        return vision_block_plan()
    if isinstance(block, (JointLayer, ExpertLayer)) or isinstance(getattr(block, "attention", None), Attention):
        return decoder_layer_plan(block)
    raise TypeError(f"no tensor-parallel plan for block type {type(block).__name__}")


def _split_tables(decoder: nn.Module) -> dict[str, ParallelStyle]:
    """Vocabulary-parallel embedding and LM head, unless they share one weight (then both are replicated:
    ``replicate_rest`` keeps them shared)."""
    embed, head = getattr(decoder, "tok_embeddings", None), getattr(decoder, "lm_head", None)
    if embed is None or head is None:
        return {}
    if head.weight is embed.weight:
        return {}
    return {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate()),
        # Logits are gathered: the loss reads whole rows (no loss parallelism).
        "lm_head": ColwiseParallel(output_layouts=Replicate()),
    }


def replicate_rest(model: nn.Module, mesh: DeviceMesh) -> int:
    """Make every module of ``REPLICATED_TYPES`` whose parameters no plan split ``Replicated``; returns
    how many. A weight shared by two modules (tied embeddings) is distributed once and re-shared."""
    shared: dict[int, DTensor] = {}
    count = 0
    for module in model.modules():
        if not isinstance(module, REPLICATED_TYPES):
            continue
        params = dict(module.named_parameters(recurse=False))
        if not params or all(isinstance(p, DTensor) for p in params.values()):
            continue
        originals = {name: id(p) for name, p in params.items()}
        for name, key in originals.items():
            if key in shared:
                setattr(module, name, shared[key])
        parallelize_module(module, mesh, Replicated())
        for name, key in originals.items():
            shared.setdefault(key, getattr(module, name))
        count += 1
    return count


def check_tp_heads(n_heads: int, n_kv_heads: int, tp: int, where: str) -> None:
    """Each rank needs whole KV heads and the query heads that read them; ValueError otherwise."""
    if tp > n_kv_heads:
        raise ValueError(f"parallelism.tensor_parallel_degree={tp} exceeds the {n_kv_heads} KV heads of {where}")
    for what, count in (("attention heads", n_heads), ("KV heads", n_kv_heads)):
        if count % tp:
            raise ValueError(f"parallelism.tensor_parallel_degree={tp} does not divide the {count} {what} of {where}")


def apply_tp(model: nn.Module, mesh: DeviceMesh) -> None:
    """Tensor-parallelise every block of every component, then the decoder's tables, then replicate the
    rest. Call before activation checkpointing, compile and FSDP (they wrap the parallelised modules)."""
    attention = next(m for m in model.modules() if isinstance(m, Attention))
    check_tp_heads(attention.n_heads, attention.n_kv_heads, mesh.size(), "the decoder")
    vision = next((m for m in model.modules() if isinstance(m, VisionBlock)), None)
    if vision is not None:
        heads = vision.attn.q_proj.out_features // vision.attn.head_dim
        check_tp_heads(heads, heads, mesh.size(), "the vision encoder")
    seen: set[int] = set()
    for name in model.components():
        for block in model.blocks(name):
            if id(block) not in seen:
                seen.add(id(block))
                parallelize_module(block, mesh, block_plan(block))
    decoder = model.components().get("decoder")
    if decoder is not None:
        plan = _split_tables(decoder)
        if plan:
            parallelize_module(decoder, mesh, plan)
    replicate_rest(model, mesh)
