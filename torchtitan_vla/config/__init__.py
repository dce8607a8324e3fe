"""Configuration: dataclass sections, TOML loading, command-line overrides, curriculum resolution."""

from .errors import ConfigError
from .job_config import JobConfig
from .loader import (
    LoadedConfig,
    ResolvedStage,
    config_from_dict,
    config_to_dict,
    load_config,
    load_toml,
    parse_command_line,
    resolve_stages,
)

__all__ = [
    "ConfigError",
    "JobConfig",
    "LoadedConfig",
    "ResolvedStage",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_toml",
    "parse_command_line",
    "resolve_stages",
]
