"""Native Qwen3-VL (vision encoder + Qwen3 decoder), numerically equal to transformers' implementation."""

from .args import FLAVORS, Qwen3VLArgs, TextArgs, VisionArgs
from .decoder import Attention, DecoderLayer, FeedForward, MoE, RMSNorm
from .hf_checkpoint import load_hf_checkpoint, save_hf_checkpoint
from .kv_cache import KVCache
from .model import Qwen3VLModel
from .rope_index import get_rope_index

__all__ = [
    "FLAVORS",
    "Attention",
    "DecoderLayer",
    "FeedForward",
    "KVCache",
    "MoE",
    "Qwen3VLArgs",
    "Qwen3VLModel",
    "RMSNorm",
    "TextArgs",
    "VisionArgs",
    "get_rope_index",
    "load_hf_checkpoint",
    "save_hf_checkpoint",
]
