"""torchtitan_vla: a torchtitan-style distributed trainer that turns Qwen3-VL into a robot policy."""

__version__ = "0.1.0"
