"""Configuration: dataclass sections, TOML loading, command-line overrides, curriculum resolution and
the load-time checks of every stage."""

from .cli import CommandLine, parse_command_line
from .constraints import Component, LoRAComponent, Range
from .errors import ConfigError
from .job_config import STAGE_SECTIONS, JobConfig
from .loader import LoadedConfig, config_from_dict, config_to_dict, load_config, load_toml
from .stages import ResolvedStage, resolve_stages
from .validate import load_stages, validate_stages

__all__ = [
    "STAGE_SECTIONS",
    "CommandLine",
    "Component",
    "ConfigError",
    "JobConfig",
    "LoRAComponent",
    "LoadedConfig",
    "Range",
    "ResolvedStage",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_stages",
    "load_toml",
    "parse_command_line",
    "resolve_stages",
    "validate_stages",
]

