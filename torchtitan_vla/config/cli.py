"""The command line: ``--config FILE``, ``--print-config`` and ``--section.key=value`` overrides.

``--section.key=value`` applies to the base and so to every stage; ``--curriculum.stages.NAME.steps=N``
and ``--curriculum.stages.NAME.section.key=value`` (a stage-level section) to one stage. Values are
typed and range-checked here, with the same messages as TOML values.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from typing import Any

from .coercion import coerce, field_types, job_level_error, unknown_key_error
from .curriculum import Stage
from .errors import ConfigError
from .job_config import STAGE_SECTIONS, JobConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SOURCE = "command line"


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
                raise ConfigError(f"{SOURCE}: --config needs a file path")
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
                f"{SOURCE}: unexpected argument '{arg}' (expected --config FILE, --print-config or --section.key=value)"
            )
        i += 1
    return CommandLine(config_path, overrides, print_config)


def _unwrap(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp


def parse_cli_value(raw: str, tp: Any) -> Any:
    """Interpret a command-line string for a field of type ``tp``.

    Strings stay verbatim; everything else is read as a TOML value (``3``, ``1e-4``, ``true``,
    ``["a", "b"]``, ``{ robot = 0.8 }``); lists also accept the comma-separated form ``a,b``.
    """
    tp = _unwrap(tp)
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
    return raw  # wrong type; coerce reports it with the key's name


def _field_type(cls: type, dotted: list[str], key: str) -> Any:
    tp: Any = cls
    for i, part in enumerate(dotted):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{SOURCE}: '{key}' goes below a value that is not a section")
        hints = field_types(tp)
        if part not in hints:
            raise unknown_key_error(tp, part, ".".join(dotted[:i]), SOURCE)
        tp = hints[part]
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{SOURCE}: '{key}' is a section; set one of its keys")
    return tp


def _stage_field_type(stage: str, rest: list[str], key: str) -> Any:
    """The type of ``curriculum.stages.<stage>.<rest>``: a stage's own key or a stage-level section's."""
    prefix = f"curriculum.stages.{stage}"
    if len(rest) == 1 and rest[0] in ("steps", "description"):
        return field_types(Stage)[rest[0]]
    if rest[0] in field_types(JobConfig) and rest[0] not in STAGE_SECTIONS:
        raise job_level_error(rest[0], {rest[1]: None} if len(rest) > 1 else {}, stage, prefix, SOURCE)
    if rest[0] not in STAGE_SECTIONS or len(rest) < 2:
        raise ConfigError(
            f"{SOURCE}: '{key}' must be {prefix}.steps, {prefix}.description or {prefix}.SECTION.key "
            f"with SECTION one of {', '.join(STAGE_SECTIONS)}"
        )
    return _field_type(JobConfig, rest, key)


@dataclass
class CliOverrides:
    base: dict
    """section -> partial table, applied to the base and so to every stage."""

    per_stage: dict
    """stage name -> {``steps``/``description``/section -> value or partial table}."""


def _set_nested(tree: dict, path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def split_cli_overrides(overrides: list[tuple[str, str]]) -> CliOverrides:
    """Type-check every override and sort it into base and per-stage partial tables."""
    base: dict = {}
    per_stage: dict = {}
    for key, raw in overrides:
        parts = key.split(".")
        if parts[:2] == ["curriculum", "stages"]:
            if len(parts) < 4:
                raise ConfigError(f"{SOURCE}: '{key}' must be curriculum.stages.NAME.key")
            tp = _stage_field_type(parts[2], parts[3:], key)
            _set_nested(per_stage.setdefault(parts[2], {}), parts[3:], coerce(parse_cli_value(raw, tp), tp, key, SOURCE))
        else:
            tp = _field_type(JobConfig, parts, key)
            _set_nested(base, parts, coerce(parse_cli_value(raw, tp), tp, key, SOURCE))
    return CliOverrides(base, per_stage)
