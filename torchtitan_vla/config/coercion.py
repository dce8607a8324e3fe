"""Plain values (from TOML or the command line) -> typed dataclasses, checked against the field types.

Types say everything a value must be: ``int``/``float``/``str``/``bool``, a ``Literal`` choice, a list
or a dict (keys too may be a ``Literal``), a union, and ``Annotated[..., Range(...)]`` bounds. Each
mismatch is one ``ConfigError`` naming the source, the dotted key, what was expected and the closest
valid choice.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any

from .constraints import Range
from .curriculum import Stage
from .errors import ConfigError
from .job_config import STAGE_SECTIONS, JobConfig


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's field types with their ``Annotated`` constraints kept."""
    return typing.get_type_hints(cls, include_extras=True)


def type_name(tp: Any) -> str:
    """How a field type reads in errors and in docs/configuration.md: ``"a" | "b"``, ``int (>= 1)``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        rules = [m.describe() for m in meta if isinstance(m, Range)]
        return f"{type_name(base)} ({'; '.join(rules)})" if rules else type_name(base)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    if origin is typing.Literal:
        return " | ".join(f'"{choice}"' for choice in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    args = ", ".join(type_name(a) for a in typing.get_args(tp))
    return f"{getattr(origin, '__name__', str(origin))}[{args}]"


def closest(value: Any, choices: list[str] | tuple[str, ...], prefix: str = "") -> str:
    """``; did you mean '<prefix>x'?`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against ``tp`` (converting int -> float); raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        value = coerce(value, base, key, source)
        for rule in meta:
            if isinstance(rule, Range) and not rule.allows(value):
                raise ConfigError(f"{source}: '{key}' must be {rule.describe()}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table, got {_describe(value)}")
        return build_dataclass(tp, value, key, source)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        raise ConfigError(
            f"{source}: '{key}' must be one of {type_name(tp)}, got {_describe(value)}{closest(value, choices)}"
        )
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
        return [coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' expects {type_name(tp)}, got {_describe(value)}")
        return {
            coerce(str(k), key_tp, f"{key}.{k}", source): coerce(v, val_tp, f"{key}.{k}", source)
            for k, v in value.items()
        }
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


def _stage_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(Stage) if f.name != "overrides"] + list(STAGE_SECTIONS)


def unknown_key_error(cls: type, key: str, prefix: str, source: str) -> ConfigError:
    names = _stage_keys() if cls is Stage else [f.name for f in dataclasses.fields(cls)]
    full = f"{prefix}.{key}" if prefix else key
    hint = closest(key, names, f"{prefix}." if prefix else "")
    kind = "section" if not prefix else "key"
    return ConfigError(f"{source}: unknown {kind} '{full}'{hint} (valid: {', '.join(names)})")


def job_level_error(section: str, table: Any, stage: str, prefix: str, source: str) -> ConfigError:
    """A stage that overrides a job-level section: name the key and say why that cannot work."""
    key = f"{prefix}.{section}"
    if isinstance(table, dict) and table:
        key += f".{next(iter(table))}"
    return ConfigError(
        f"{source}: stage '{stage}': '{key}': {section} is job-level (built once for the whole job); "
        f"a stage may override only {', '.join(STAGE_SECTIONS)}"
    )


def build_dataclass(cls: type, data: dict, prefix: str, source: str) -> Any:
    if cls is Stage:
        return _build_stage(data, prefix, source)
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise unknown_key_error(cls, key, prefix, source)
        kwargs[key] = coerce(value, hints[key], f"{prefix}.{key}" if prefix else key, source)
    required = [
        name for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in kwargs
    ]
    if required:
        raise ConfigError(f"{source}: '{prefix}' needs {', '.join(repr(r) for r in required)}")
    return cls(**kwargs)


def _build_stage(data: dict, prefix: str, source: str) -> Stage:
    """A stage holds its own keys plus sub-tables named after stage-level sections, each a partial override."""
    section_types = field_types(JobConfig)
    own_keys = [k for k in _stage_keys() if k not in STAGE_SECTIONS]
    own = {}
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in own_keys:
            own[key] = value
        elif key in STAGE_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{prefix}.{key}' must be a table of {key} overrides")
            # Validate the partial override now so errors name the stage's key; keep the raw dict.
            build_partial(section_types[key], value, f"{prefix}.{key}", source)
            overrides[key] = value
        elif key in section_types:
            raise job_level_error(key, value, str(data.get("name", "")), prefix, source)
        else:
            raise unknown_key_error(Stage, key, prefix, source)
    if not own.get("name"):
        raise ConfigError(f"{source}: '{prefix}' needs a name")
    if "steps" not in own:
        raise ConfigError(f"{source}: '{prefix}' ({own['name']}) needs steps")
    hints = field_types(Stage)
    stage = Stage(**{k: coerce(v, hints[k], f"{prefix}.{k}", source) for k, v in own.items()})
    stage.overrides = overrides
    return stage


def build_partial(cls: type, data: dict, prefix: str, source: str) -> None:
    """Check a partial table of ``cls`` (e.g. a stage override): known keys, well-typed values."""
    hints = field_types(cls)
    for key, value in data.items():
        if key not in hints:
            raise unknown_key_error(cls, key, prefix, source)
        coerce(value, hints[key], f"{prefix}.{key}", source)
