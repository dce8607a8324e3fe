"""Render a configuration as TOML text (``--print-config``)."""

from __future__ import annotations

import json
from typing import Any

from .loader import ResolvedStage, config_to_dict


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot render {value!r} as TOML")


def _render_table(name: str, table: dict, lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))}
    arrays = {k: v for k, v in table.items() if k not in scalars}
    lines.append(f"[{name}]")
    lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
    lines.append("")
    for key, items in arrays.items():
        for item in items:
            lines.append(f"[[{name}.{key}]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
            lines.append("")


def render_config(cfg: Any) -> str:
    """TOML text of a full configuration (every section, every key)."""
    lines: list[str] = []
    for section, table in config_to_dict(cfg).items():
        if section == "curriculum":
            table = {k: v for k, v in table.items() if k != "stages"}
        _render_table(section, table, lines)
    return "\n".join(lines)


def render_stages(stages: list[ResolvedStage]) -> str:
    """Each stage resolved into a complete configuration, one block per stage."""
    out = []
    for stage in stages:
        header = f"# ===== stage {stage.index + 1}/{len(stages)}: {stage.name} ({stage.steps} steps)"
        if stage.description:
            header += f"\n# {stage.description}"
        out.append(header + "\n" + render_config(stage.config))
    return "\n".join(out)
