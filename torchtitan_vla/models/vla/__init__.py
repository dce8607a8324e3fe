"""The VLA: Qwen3-VL with a flow-matching Action Expert."""

from .inputs import Observation, PrefixCache
from .model import VLA
from .options import FlowTimeDistribution, ForwardOptions, LossSums

__all__ = ["VLA", "FlowTimeDistribution", "ForwardOptions", "LossSums", "Observation", "PrefixCache"]
