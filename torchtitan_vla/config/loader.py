"""TOML + command line -> a typed, checked ``JobConfig`` (the base every curriculum stage starts from).

Precedence is CLI > TOML > dataclass defaults. Field types and their ``Range`` constraints are checked
here (coercion.py); the stages are resolved by stages.py and cross-checked by validate.py.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any

from .cli import CliOverrides, split_cli_overrides
from .coercion import build_dataclass, closest
from .errors import ConfigError
from .job_config import JobConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# Tables whose keys are data (source or component names), not fields: a new value replaces the whole
# table, so a stage's mixture never silently inherits weights of sources it did not name.
REPLACED_TABLES = {"mixture", "validation_mixture", "component_lr", "component_weight_decay"}


def load_toml(path: str) -> dict:
    """Read a TOML file; a missing file or a syntax error is a ConfigError that names the path."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; tables merge key by key, ``REPLACED_TABLES`` and non-tables are replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_TABLES:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: Any) -> dict:
    """The configuration as plain dicts/lists (for logging, wandb and export)."""
    return _to_plain(cfg)


def config_from_dict(data: dict, source: str) -> JobConfig:
    """A checked JobConfig from plain dicts (e.g. an exported ``config.json``); errors name ``source``."""
    return build_dataclass(JobConfig, data, "", source)


@dataclass
class LoadedConfig:
    """A checked base configuration plus what is needed to resolve its stages."""

    config: JobConfig
    source: str
    cli: CliOverrides


def _check_stage_names(cfg: JobConfig, cli: CliOverrides, source: str) -> None:
    names = [s.name for s in cfg.curriculum.stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: curriculum stage names must be unique, got {names}")
    for name in cli.per_stage:
        if name not in names:
            raise ConfigError(f"command line: no curriculum stage named '{name}'{closest(name, names)} (stages: {names})")
    only, skip = cfg.curriculum.only_stage, cfg.curriculum.skip_stages
    if only and only not in names:
        raise ConfigError(f"{source}: curriculum.only_stage '{only}'{closest(only, names)} is not a stage (stages: {names})")
    unknown = [name for name in skip if name not in names]
    if unknown:
        raise ConfigError(f"{source}: curriculum.skip_stages names {unknown}, not stages (stages: {names})")
    if names and set(names) <= set(skip):
        raise ConfigError(f"{source}: curriculum.skip_stages leaves no stage to run")
    if only in skip:
        raise ConfigError(f"{source}: curriculum.only_stage '{only}' is also in curriculum.skip_stages")


def load_config(config_path: str | None, overrides: list[tuple[str, str]] | None = None) -> LoadedConfig:
    """Build the base configuration: defaults < TOML < command line."""
    data = load_toml(config_path) if config_path else {}
    source = config_path or "defaults"
    cli = split_cli_overrides(overrides or [])
    cfg = build_dataclass(JobConfig, merge(data, cli.base), "", source)
    _check_stage_names(cfg, cli, source)
    return LoadedConfig(cfg, source, cli)
