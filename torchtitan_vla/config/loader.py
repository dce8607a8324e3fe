"""TOML + command line -> validated ``JobConfig``, and the per-stage resolution of the curriculum.

Precedence is CLI > TOML > dataclass defaults, also inside stages: a stage's TOML overrides replace
the TOML base, and command-line overrides replace both (``--training.lr=...`` applies to every stage;
``--curriculum.stages.NAME.training.steps=...`` to one).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

from .curriculum import Stage
from .errors import ConfigError
from .job_config import JobConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


# --------------------------------------------------------------------------------------------------
# Type checking of values against dataclass field types
# --------------------------------------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """How a field type reads in errors and in docs/configuration.md (a choice: ``"a" | "b"``)."""
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    if origin is typing.Literal:
        return " | ".join(f'"{choice}"' for choice in typing.get_args(tp))
    args = ", ".join(type_name(a) for a in typing.get_args(tp))
    return f"{getattr(origin, '__name__', str(origin))}[{args}]"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against ``tp`` (converting int -> float); raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table, got {_describe(value)}")
        return _build_dataclass(tp, value, key, source)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{source}: '{key}' must be one of {type_name(tp)}, got {_describe(value)}{hint}")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
        return {str(k): _coerce(v, val_tp, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this loader does not know is a programming error
        raise TypeError(f"unsupported config field type {tp!r} for {key}")
    raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")


def _unknown_key_error(cls: type, key: str, prefix: str, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    if cls is Stage:
        names = [n for n in names if n != "overrides"] + [f.name for f in dataclasses.fields(JobConfig)]
    full = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
    kind = "section" if not prefix else "key"
    return ConfigError(f"{source}: unknown {kind} '{full}'{hint} (valid: {', '.join(names)})")


def _build_dataclass(cls: type, data: dict, prefix: str, source: str) -> Any:
    if cls is Stage:
        return _build_stage(data, prefix, source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key_error(cls, key, prefix, source)
        full = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(value, hints[key], full, source)
    return cls(**kwargs)


def _build_stage(data: dict, prefix: str, source: str) -> Stage:
    """A stage holds its own keys plus sub-tables named after sections, each a partial override."""
    section_types = typing.get_type_hints(JobConfig)
    own = {}
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in ("name", "steps", "description"):
            own[key] = value
        elif key in section_types and key != "curriculum":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{prefix}.{key}' must be a table of {key} overrides")
            # Validate the partial override now so errors name the stage's key; keep the raw dict.
            _build_dataclass(section_types[key], value, f"{prefix}.{key}", source)
            overrides[key] = value
        else:
            raise _unknown_key_error(Stage, key, prefix, source)
    hints = typing.get_type_hints(Stage)
    stage = Stage(**{k: _coerce(v, hints[k], f"{prefix}.{k}", source) for k, v in own.items()})
    stage.overrides = overrides
    if not stage.name:
        raise ConfigError(f"{source}: '{prefix}' needs a name")
    if stage.steps <= 0:
        raise ConfigError(f"{source}: '{prefix}.steps' must be a positive integer, got {stage.steps}")
    return stage


# --------------------------------------------------------------------------------------------------
# TOML and command line
# --------------------------------------------------------------------------------------------------


def load_toml(path: str) -> dict:
    """Read a TOML file; a missing file or a syntax error is a ConfigError that names the path."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def _parse_cli_value(raw: str, tp: Any) -> Any:
    """Interpret a command-line string for a field of type ``tp``.

    Strings stay verbatim; everything else is read as a TOML value (``3``, ``1e-4``, ``true``,
    ``["a", "b"]``, ``{ robot = 0.8 }``); lists also accept the comma-separated form ``a,b``.
    """
    if tp is str or typing.get_origin(tp) is typing.Literal:
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if typing.get_origin(tp) is list:
        return [p.strip() for p in raw.split(",") if p.strip()] if raw.strip() else []
    if tp is bool and raw.lower() in ("yes", "no", "on", "off", "1", "0"):
        return raw.lower() in ("yes", "on", "1")
    return raw  # wrong type; _coerce reports it with the key's name


def _field_type(cls: type, dotted: list[str], key: str) -> Any:
    tp: Any = cls
    for i, part in enumerate(dotted):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"command line: '{key}' goes below a value that is not a section")
        hints = typing.get_type_hints(tp)
        if part not in hints:
            raise _unknown_key_error(tp, part, ".".join(dotted[:i]), "command line")
        tp = hints[part]
    return tp


@dataclass
class CommandLine:
    """What ``train.py`` was asked to do."""

    config_path: str | None
    overrides: list[tuple[str, str]]
    print_config: bool = False


def parse_command_line(argv: list[str]) -> CommandLine:
    """Split ``--config FILE``, ``--print-config`` and ``--section.key[=value]`` overrides.

    A bare ``--section.flag`` (no value, or followed by another ``--`` option) means ``true``.
    """
    config_path = None
    print_config = False
    overrides: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--print-config", "--print_config"):
            print_config = True
        elif arg == "--config" or arg.startswith("--config="):
            if "=" in arg:
                config_path = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                config_path = argv[i + 1]
                i += 1
            else:
                raise ConfigError("command line: --config needs a file path")
        elif arg.startswith("--") and "." in arg.split("=", 1)[0]:
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                key, value = arg[2:], argv[i + 1]
                i += 1
            else:
                key, value = arg[2:], "true"
            overrides.append((key, value))
        else:
            raise ConfigError(
                f"command line: unexpected argument '{arg}' "
                "(expected --config FILE, --print-config or --section.key=value)"
            )
        i += 1
    return CommandLine(config_path, overrides, print_config)


def _set_nested(tree: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; tables merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in _REPLACED_TABLES:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Tables whose keys are data (source names), not fields: a new value replaces the whole table, so a
# stage's mixture never silently inherits weights of sources it did not name.
_REPLACED_TABLES = {"mixture", "validation_mixture", "component_lr", "component_weight_decay"}


@dataclass
class _CliOverrides:
    base: dict  # section -> partial dict, applied to every stage and the base
    per_stage: dict  # stage name -> section -> partial dict


def _split_cli_overrides(overrides: list[tuple[str, str]]) -> _CliOverrides:
    base: dict = {}
    per_stage: dict = {}
    for key, raw in overrides:
        parts = key.split(".")
        if parts[:2] == ["curriculum", "stages"]:
            if len(parts) < 4:
                raise ConfigError(
                    f"command line: '{key}' must be curriculum.stages.NAME.key or "
                    "curriculum.stages.NAME.section.key"
                )
            stage_name, rest = parts[2], parts[3:]
            if rest in (["steps"], ["description"]):
                tp = int if rest == ["steps"] else str
            else:
                tp = _field_type(JobConfig, rest, key)
            value = _coerce(_parse_cli_value(raw, tp), tp, key, "command line")
            _set_nested(per_stage.setdefault(stage_name, {}), rest, value)
        else:
            tp = _field_type(JobConfig, parts, key)
            if dataclasses.is_dataclass(tp):
                raise ConfigError(f"command line: '{key}' is a section; set one of its keys")
            value = _coerce(_parse_cli_value(raw, tp), tp, key, "command line")
            _set_nested(base, parts, value)
    return _CliOverrides(base, per_stage)


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
    """A validated JobConfig from plain dicts (e.g. an exported ``config.json``); errors name ``source``."""
    return _build_dataclass(JobConfig, data, "", source)


@dataclass
class LoadedConfig:
    """A validated configuration plus what is needed to resolve its stages."""

    config: JobConfig
    source: str
    cli: _CliOverrides


def load_config(config_path: str | None, overrides: list[tuple[str, str]] | None = None) -> LoadedConfig:
    """Build the base configuration: defaults < TOML < command line."""
    overrides = overrides or []
    data = load_toml(config_path) if config_path else {}
    source = config_path or "defaults"
    cli = _split_cli_overrides(overrides)
    merged = _merge(data, cli.base)
    cfg = _build_dataclass(JobConfig, merged, "", source)
    stage_names = [s.name for s in cfg.curriculum.stages]
    if len(set(stage_names)) != len(stage_names):
        raise ConfigError(f"{source}: curriculum stage names must be unique, got {stage_names}")
    for name in cli.per_stage:
        if name not in stage_names:
            close = difflib.get_close_matches(name, stage_names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"command line: no curriculum stage named '{name}'{hint} (stages: {stage_names})")
    if cfg.curriculum.only_stage and cfg.curriculum.only_stage not in stage_names:
        raise ConfigError(
            f"{source}: curriculum.only_stage '{cfg.curriculum.only_stage}' is not a stage (stages: {stage_names})"
        )
    unknown = [name for name in cfg.curriculum.skip_stages if name not in stage_names]
    if unknown:
        raise ConfigError(f"{source}: curriculum.skip_stages names {unknown}, not stages (stages: {stage_names})")
    if stage_names and set(stage_names) <= set(cfg.curriculum.skip_stages):
        raise ConfigError(f"{source}: curriculum.skip_stages leaves no stage to run")
    if cfg.curriculum.only_stage in cfg.curriculum.skip_stages:
        raise ConfigError(f"{source}: curriculum.only_stage '{cfg.curriculum.only_stage}' is also in curriculum.skip_stages")
    return LoadedConfig(cfg, source, cli)


@dataclass
class ResolvedStage:
    """One stage as the trainer sees it: a complete configuration."""

    index: int
    name: str
    steps: int
    description: str
    config: JobConfig


def resolve_stages(loaded: LoadedConfig) -> list[ResolvedStage]:
    """Every stage as a complete configuration: base < stage TOML overrides < command line.

    Without stages the job is one stage named ``train`` with ``training.steps`` steps.
    """
    cfg = loaded.config
    base = config_to_dict(cfg)
    base["curriculum"]["stages"] = []
    stages = cfg.curriculum.stages or [Stage(name="train", steps=cfg.training.steps)]
    resolved = []
    for index, stage in enumerate(stages):
        per_stage = copy.deepcopy(loaded.cli.per_stage.get(stage.name, {}))
        merged = _merge(_merge(base, stage.overrides), loaded.cli.base)
        steps = per_stage.pop("steps", stage.steps)
        description = per_stage.pop("description", stage.description)
        merged = _merge(merged, per_stage)
        merged["training"]["steps"] = steps
        stage_cfg = _build_dataclass(JobConfig, merged, "", f"{loaded.source} (stage '{stage.name}')")
        resolved.append(ResolvedStage(index, stage.name, steps, description, stage_cfg))
    return resolved
