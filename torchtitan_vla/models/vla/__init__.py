"""The VLA: Qwen3-VL with a flow-matching Action Expert."""

from .model import VLA, not_in_hf_checkpoint
from .options import FlowTimeDistribution, ForwardOptions, LossSums

__all__ = ["VLA", "FlowTimeDistribution", "ForwardOptions", "LossSums", "not_in_hf_checkpoint"]
