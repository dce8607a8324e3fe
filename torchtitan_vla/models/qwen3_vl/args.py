"""Qwen3-VL architecture arguments, the released flavors, and conversion to/from HF ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TextArgs:
    vocab_size: int = 151936
    """Rows of the token embedding (and of the LM head)."""

    dim: int = 2048
    """Width D of the decoder's residual stream."""

    n_layers: int = 28
    """Number of decoder layers."""

    n_heads: int = 16
    """Query heads per attention layer."""

    n_kv_heads: int = 8
    """Key/value heads (grouped-query attention); must divide ``n_heads``."""

    head_dim: int = 128
    """Per-head width; explicit because ``n_heads * head_dim`` differs from ``dim`` in most releases."""

    intermediate_size: int = 6144
    """Hidden width of the dense SwiGLU MLP (unused by MoE layers)."""

    rms_norm_eps: float = 1e-6
    """Epsilon of every RMSNorm in the decoder (including the per-head QK norms)."""

    rope_theta: float = 5_000_000.0
    """Base of the text rotary frequencies."""

    mrope_section: tuple[int, int, int] = (24, 20, 20)
    """Frequencies driven by the T, H and W position rows (interleaved); sums to ``head_dim // 2``."""

    max_position_embeddings: int = 262144
    """Longest context the released checkpoints were trained for (exported to config.json)."""

    tie_word_embeddings: bool = False
    """The LM head shares the token-embedding weight (2B and 4B)."""

    num_experts: int = 0
    """Routed experts per MoE layer; 0 makes every layer a dense SwiGLU."""

    num_experts_per_tok: int = 0
    """Experts each token is routed to (top-k)."""

    moe_intermediate_size: int = 0
    """Hidden width of each expert's SwiGLU."""

    decoder_sparse_step: int = 1
    """Layer ``l`` is MoE when ``(l + 1) % decoder_sparse_step == 0`` (and not in ``mlp_only_layers``)."""

    mlp_only_layers: tuple[int, ...] = ()
    """Layers that stay dense in an MoE model."""

    router_aux_loss_coef: float = 0.001
    """Weight of the load-balancing loss (exported to config.json; the trainer decides whether to use it)."""

    def is_moe_layer(self, layer_id: int) -> bool:
        return (
            self.num_experts > 0
            and layer_id not in self.mlp_only_layers
            and (layer_id + 1) % self.decoder_sparse_step == 0
        )


@dataclass
class VisionArgs:
    depth: int = 24
    """Number of ViT blocks."""

    dim: int = 1024
    """Width C of the ViT residual stream."""

    n_heads: int = 16
    """ViT attention heads; ``dim // n_heads`` must be divisible by 4 (2-D RoPE)."""

    intermediate_size: int = 4096
    """Hidden width of the ViT MLP."""

    in_channels: int = 3
    """Image channels."""

    patch_size: int = 16
    """Spatial patch side in pixels."""

    temporal_patch_size: int = 2
    """Frames per temporal patch (still images are duplicated to fill it)."""

    spatial_merge_size: int = 2
    """Side of the patch block merged into one LLM token."""

    num_position_embeddings: int = 2304
    """Rows of the learned position table, a square grid (48 x 48 in the releases)."""

    deepstack_visual_indexes: tuple[int, ...] = (5, 11, 17)
    """ViT blocks whose outputs feed the DeepStack mergers; level k is added after decoder layer k."""

    rope_theta: float = 10000.0
    """Base of the ViT's 2-D rotary frequencies."""

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.temporal_patch_size * self.patch_size**2


@dataclass
class Qwen3VLArgs:
    text: TextArgs = field(default_factory=TextArgs)
    """Decoder arguments."""

    vision: VisionArgs = field(default_factory=VisionArgs)
    """Vision-encoder arguments."""

    image_token_id: int = 151655
    """``<|image_pad|>``: placeholder replaced by one merged image feature."""

    video_token_id: int = 151656
    """``<|video_pad|>``: placeholder replaced by one merged video feature."""

    vision_start_token_id: int = 151652
    """``<|vision_start|>``."""

    vision_end_token_id: int = 151653
    """``<|vision_end|>``."""

    bos_token_id: int = 151643
    """``<|endoftext|>`` (exported to config.json)."""

    eos_token_id: int = 151645
    """``<|im_end|>``: generation stops here."""

    def __post_init__(self) -> None:
        t, v = self.text, self.vision
        if sum(t.mrope_section) != t.head_dim // 2:
            raise ValueError(f"sum(mrope_section)={sum(t.mrope_section)} must equal head_dim//2={t.head_dim // 2}")
        if t.n_heads % t.n_kv_heads:
            raise ValueError(f"n_heads={t.n_heads} is not a multiple of n_kv_heads={t.n_kv_heads}")
        if (v.dim // v.n_heads) % 4:
            raise ValueError(f"vision head_dim={v.dim // v.n_heads} must be divisible by 4 (2-D RoPE)")
        bad_taps = [i for i in v.deepstack_visual_indexes if not 0 <= i < v.depth]
        if bad_taps:
            raise ValueError(f"deepstack_visual_indexes {bad_taps} are outside the ViT depth {v.depth}")
        if len(v.deepstack_visual_indexes) > t.n_layers:
            raise ValueError("more DeepStack levels than decoder layers")

    @property
    def is_moe(self) -> bool:
        return self.text.num_experts > 0

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> Qwen3VLArgs:
        """Read a transformers ``config.json`` dict (hub 4.57-style or 5.x-style keys)."""
        if "text_config" not in cfg or "vision_config" not in cfg:
            raise ValueError("config.json lacks 'text_config' or 'vision_config': not a Qwen3-VL config")
        tc, vc = cfg["text_config"], cfg["vision_config"]
        rope = tc.get("rope_parameters") or tc.get("rope_scaling") or {}
        theta = tc.get("rope_theta", rope.get("rope_theta"))
        if theta is None:
            raise ValueError("text_config has neither 'rope_theta' nor 'rope_parameters.rope_theta'")
        # Top-level key first (5.x); text_config's only as a fallback (see reference pitfall 12).
        tie = cfg.get("tie_word_embeddings", tc.get("tie_word_embeddings", False))
        num_experts = tc.get("num_experts", tc.get("num_local_experts", 0)) or 0
        vision_rope = vc.get("rope_parameters") or {}
        text = TextArgs(
            vocab_size=tc["vocab_size"],
            dim=tc["hidden_size"],
            n_layers=tc["num_hidden_layers"],
            n_heads=tc["num_attention_heads"],
            n_kv_heads=tc.get("num_key_value_heads") or tc["num_attention_heads"],
            head_dim=tc.get("head_dim") or tc["hidden_size"] // tc["num_attention_heads"],
            intermediate_size=tc.get("intermediate_size", 0),
            rms_norm_eps=tc.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            mrope_section=tuple(rope.get("mrope_section", (24, 20, 20))),
            max_position_embeddings=tc.get("max_position_embeddings", 262144),
            tie_word_embeddings=bool(tie),
            num_experts=num_experts,
            num_experts_per_tok=tc.get("num_experts_per_tok", 0) if num_experts else 0,
            moe_intermediate_size=tc.get("moe_intermediate_size", 0) if num_experts else 0,
            decoder_sparse_step=tc.get("decoder_sparse_step", 1) or 1,
            mlp_only_layers=tuple(tc.get("mlp_only_layers") or ()),
            router_aux_loss_coef=tc.get("router_aux_loss_coef", 0.001),
        )
        vision = VisionArgs(
            depth=vc["depth"],
            dim=vc["hidden_size"],
            n_heads=vc["num_heads"],
            intermediate_size=vc["intermediate_size"],
            in_channels=vc.get("in_channels", 3),
            patch_size=vc.get("patch_size", 16),
            temporal_patch_size=vc.get("temporal_patch_size", 2),
            spatial_merge_size=vc.get("spatial_merge_size", 2),
            num_position_embeddings=vc.get("num_position_embeddings", 2304),
            deepstack_visual_indexes=tuple(vc.get("deepstack_visual_indexes", (8, 16, 24))),
            rope_theta=float(vision_rope.get("rope_theta", 10000.0)),
        )
        if vc.get("out_hidden_size", text.dim) != text.dim:
            raise ValueError(f"vision out_hidden_size={vc['out_hidden_size']} != text hidden_size={text.dim}")
        ids = {k: cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                   "vision_end_token_id") if k in cfg}
        eos = cfg.get("eos_token_id", tc.get("eos_token_id", 151645))
        if isinstance(eos, list):
            eos = eos[0]
        return cls(text=text, vision=vision, bos_token_id=cfg.get("bos_token_id", tc.get("bos_token_id", 151643)),
                   eos_token_id=eos, **ids)

    def to_hf_config(self) -> dict[str, Any]:
        """A ``config.json`` dict that both transformers 4.57 and 5.x load (hub-style keys)."""
        t, v = self.text, self.vision
        model_type = "qwen3_vl_moe" if self.is_moe else "qwen3_vl"
        rope = {"rope_type": "default", "mrope_section": list(t.mrope_section), "mrope_interleaved": True}
        text_config: dict[str, Any] = {
            "model_type": f"{model_type}_text",
            "vocab_size": t.vocab_size,
            "hidden_size": t.dim,
            "num_hidden_layers": t.n_layers,
            "num_attention_heads": t.n_heads,
            "num_key_value_heads": t.n_kv_heads,
            "head_dim": t.head_dim,
            "intermediate_size": t.intermediate_size,
            "hidden_act": "silu",
            "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": t.rope_theta,
            "rope_scaling": rope,
            "max_position_embeddings": t.max_position_embeddings,
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": t.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "dtype": "bfloat16",
        }
        if self.is_moe:
            text_config.update(
                num_experts=t.num_experts,
                num_experts_per_tok=t.num_experts_per_tok,
                moe_intermediate_size=t.moe_intermediate_size,
                decoder_sparse_step=t.decoder_sparse_step,
                mlp_only_layers=list(t.mlp_only_layers),
                norm_topk_prob=True,
                router_aux_loss_coef=t.router_aux_loss_coef,
            )
        vision_config = {
            "model_type": model_type,
            "depth": v.depth,
            "hidden_size": v.dim,
            "num_heads": v.n_heads,
            "intermediate_size": v.intermediate_size,
            "hidden_act": "gelu_pytorch_tanh",
            "in_channels": v.in_channels,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "out_hidden_size": t.dim,
            "num_position_embeddings": v.num_position_embeddings,
            "deepstack_visual_indexes": list(v.deepstack_visual_indexes),
        }
        arch = "Qwen3VLMoeForConditionalGeneration" if self.is_moe else "Qwen3VLForConditionalGeneration"
        return {
            "architectures": [arch],
            "model_type": model_type,
            "text_config": text_config,
            "vision_config": vision_config,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": t.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }

    def replace(self, **changes: Any) -> Qwen3VLArgs:
        """A copy with top-level fields replaced (e.g. the debug tokenizer's special-token ids)."""
        return dataclasses.replace(self, **changes)


def _released(text: TextArgs, small_vit: bool) -> Qwen3VLArgs:
    if small_vit:  # 2B / 4B
        vision = VisionArgs(depth=24, dim=1024, intermediate_size=4096, deepstack_visual_indexes=(5, 11, 17))
    else:
        vision = VisionArgs(depth=27, dim=1152, intermediate_size=4304, deepstack_visual_indexes=(8, 16, 24))
    return Qwen3VLArgs(text=text, vision=vision)


FLAVORS: dict[str, Qwen3VLArgs] = {
    # Tiny and fast on CPU: a small vocabulary for the debug tokenizer; the special-token ids sit at the
    # top of it (override them with ``.replace`` to match a particular tokenizer).
    "debug": Qwen3VLArgs(
        text=TextArgs(vocab_size=1024, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16,
                      intermediate_size=128, mrope_section=(4, 2, 2), max_position_embeddings=4096),
        vision=VisionArgs(depth=2, dim=64, n_heads=4, intermediate_size=128, num_position_embeddings=64,
                          deepstack_visual_indexes=(0, 1)),
        image_token_id=1015, video_token_id=1016, vision_start_token_id=1012, vision_end_token_id=1013,
        bos_token_id=1003, eos_token_id=1005,
    ),
    # The debug flavor with routed experts in every other layer (layers 1 and 3): expert-parallel tests.
    # 2 x moe_intermediate_size != dim, or the two layouts of the fused gate_up tensor look alike.
    "debug-moe": Qwen3VLArgs(
        text=TextArgs(vocab_size=1024, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=16,
                      intermediate_size=128, mrope_section=(4, 2, 2), max_position_embeddings=4096,
                      num_experts=8, num_experts_per_tok=2, moe_intermediate_size=48, decoder_sparse_step=2),
        vision=VisionArgs(depth=2, dim=64, n_heads=4, intermediate_size=128, num_position_embeddings=64,
                          deepstack_visual_indexes=(0, 1)),
        image_token_id=1015, video_token_id=1016, vision_start_token_id=1012, vision_end_token_id=1013,
        bos_token_id=1003, eos_token_id=1005,
    ),
    "2B": _released(TextArgs(dim=2048, n_layers=28, n_heads=16, n_kv_heads=8, intermediate_size=6144,
                             tie_word_embeddings=True), small_vit=True),
    "4B": _released(TextArgs(dim=2560, n_layers=36, n_heads=32, n_kv_heads=8, intermediate_size=9728,
                             tie_word_embeddings=True), small_vit=True),
    "8B": _released(TextArgs(dim=4096, n_layers=36, n_heads=32, n_kv_heads=8, intermediate_size=12288),
                    small_vit=False),
    "32B": _released(TextArgs(dim=5120, n_layers=64, n_heads=64, n_kv_heads=8, intermediate_size=25600),
                     small_vit=False),
    "30B-A3B": _released(TextArgs(dim=2048, n_layers=48, n_heads=32, n_kv_heads=4, intermediate_size=6144,
                                  num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768),
                         small_vit=False),
    "235B-A22B": _released(TextArgs(dim=4096, n_layers=94, n_heads=64, n_kv_heads=4, intermediate_size=12288,
                                    num_experts=128, num_experts_per_tok=8, moe_intermediate_size=1536),
                           small_vit=False),
}
