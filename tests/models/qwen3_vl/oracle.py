"""Tiny random transformers Qwen3-VL models (the parity oracle) and matching test inputs."""

from __future__ import annotations

import torch

VOCAB = 512
IMAGE_ID, VIDEO_ID, VISION_START, VISION_END = 500, 501, 502, 503
MERGE = 2


def tiny_hf_config(moe: bool = False, tie: bool = False, n_layers: int = 3) -> dict:
    """A config.json-style dict of a tiny Qwen3-VL (or Qwen3-VL-MoE) with a 512-token vocabulary."""
    text = {
        "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": n_layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6,
        "rope_theta": 5e6, "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2],
                                             "mrope_interleaved": True},
        "max_position_embeddings": 4096, "tie_word_embeddings": tie,
    }
    if moe:
        text.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=48, decoder_sparse_step=1,
                    mlp_only_layers=[], norm_topk_prob=True)
    vision = {
        "depth": 3, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "patch_size": 16,
        "temporal_patch_size": 2, "spatial_merge_size": MERGE, "out_hidden_size": 64,
        "num_position_embeddings": 64, "deepstack_visual_indexes": [0, 2],
    }
    return {
        "model_type": "qwen3_vl_moe" if moe else "qwen3_vl", "text_config": text, "vision_config": vision,
        "image_token_id": IMAGE_ID, "video_token_id": VIDEO_ID, "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END, "tie_word_embeddings": tie,
    }


def tiny_hf_model(moe: bool = False, tie: bool = False, seed: int = 0, n_layers: int = 3):
    """A transformers model with every parameter (norm weights included) randomly perturbed, fp32, eval."""
    import transformers

    cfg_dict = tiny_hf_config(moe, tie, n_layers)
    if moe:
        cfg = transformers.Qwen3VLMoeConfig(**{k: v for k, v in cfg_dict.items() if k != "model_type"})
        cls = transformers.Qwen3VLMoeForConditionalGeneration
    else:
        cfg = transformers.Qwen3VLConfig(**{k: v for k, v in cfg_dict.items() if k != "model_type"})
        cls = transformers.Qwen3VLForConditionalGeneration
    torch.manual_seed(seed)
    model = cls(cfg).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def image_run(grid: tuple[int, int, int], token: int = IMAGE_ID) -> list[int]:
    t, h, w = grid
    return [VISION_START] + [token] * (t * h * w // MERGE**2) + [VISION_END]


def pixels(grids: list[tuple[int, int, int]], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patch rows (sum t*h*w, 1536) and the matching grid_thw."""
    g = torch.Generator().manual_seed(seed)
    n = sum(t * h * w for t, h, w in grids)
    return torch.randn(n, 1536, generator=g), torch.tensor(grids, dtype=torch.long)


def text(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 400, (n,), generator=g).tolist()


def mm_token_type_ids(input_ids: torch.Tensor) -> torch.Tensor:
    return (input_ids == IMAGE_ID).long() + 2 * (input_ids == VIDEO_ID).long()
