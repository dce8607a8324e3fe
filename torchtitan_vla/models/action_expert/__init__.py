"""The flow-matching Action Expert: layers, joint (pi0) and late fusion, flow-matching math."""

from .expert import ActionExpertModel, expert_text_args
from .layers import ExpertInputs, ExpertLayer, JointLayer
from .norms import AdaRMSNorm

__all__ = [
    "ActionExpertModel",
    "AdaRMSNorm",
    "ExpertInputs",
    "ExpertLayer",
    "JointLayer",
    "expert_text_args",
]
