"""``--print-config``: what every stage runs with, as TOML.

The printed text is one TOML document, an array ``[[stages]]`` whose entries hold the stage's index,
name, steps and description and every section of its resolved configuration; ``tomllib.loads`` of the
text equals ``stage_values(stages)``, the plain data the trainer's per-stage objects are built from.
"""

from __future__ import annotations

import json
from typing import Any

from .loader import config_to_dict
from .stages import ResolvedStage


def toml_value(value: Any) -> str:
    """A plain value as TOML inline syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _render_table(name: str, table: dict, lines: list[str]) -> None:
    """``[name]`` with its scalar keys, then its arrays of tables as ``[[name.key]]``."""
    arrays = {k: v for k, v in table.items() if _is_table_array(v)}
    lines.append(f"[{name}]")
    lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items() if k not in arrays)
    lines.append("")
    for key, items in arrays.items():
        for item in items:
            lines.append(f"[[{name}.{key}]]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
            lines.append("")


def stage_values(stages: list[ResolvedStage]) -> dict:
    """``{"stages": [{index, name, steps, description, <section>: {...}, ...}]}``: exactly what is printed.

    A stage's ``curriculum`` section leaves out ``stages`` (the stages are the outer list).
    """
    out = []
    for stage in stages:
        sections = config_to_dict(stage.config)
        del sections["curriculum"]["stages"]
        out.append({"index": stage.index, "name": stage.name, "steps": stage.steps,
                    "description": stage.description, **sections})
    return {"stages": out}


def render_stages(stages: list[ResolvedStage]) -> str:
    """Every stage resolved into a complete configuration, as one TOML document."""
    lines: list[str] = []
    for values in stage_values(stages)["stages"]:
        lines.append(f"# stage {values['index'] + 1}/{len(stages)}: {values['name']} ({values['steps']} steps)")
        lines.append("[[stages]]")
        sections = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items() if k not in sections)
        lines.append("")
        for section, table in sections.items():
            _render_table(f"stages.{section}", table, lines)
    return "\n".join(lines)
