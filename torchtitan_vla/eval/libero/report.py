"""The Markdown success table, rendered from a ``results.json`` alone.

A result without its provenance (``provenance.REQUIRED``) is refused with one line naming the first
missing field: a number without what it was measured with is not printed.

    python -m torchtitan_vla.eval.libero report RESULTS.json [--out RESULTS.md]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .plan import STANDARD
from .provenance import missing_fields


class ProvenanceError(ValueError):
    """A result file lacking a provenance field."""


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}"


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    variants = sorted({v for row in rows for v in row["success"]} - {STANDARD})
    return [STANDARD, *variants]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_markdown(document: dict[str, Any], source: str = "results.json") -> str:
    provenance = document.get("provenance")
    if not isinstance(provenance, dict):
        raise ProvenanceError(f"{source}: no provenance; refusing to render it")
    missing = missing_fields(provenance)
    if missing:
        raise ProvenanceError(f"{source}: provenance lacks '{missing[0]}'; refusing to render it")
    lines = ["# LIBERO evaluation", ""]
    suite_rows = list(document["suites"].items())
    columns = _columns([s for _, s in suite_rows])
    lines += _table(["suite", "tasks", "episodes", *[f"{c} (%)" for c in columns]],
                    [[name, str(s["tasks"]), str(s["episodes"]), *[_pct(s["success"].get(c)) for c in columns]]
                     for name, s in suite_rows])
    for suite, _ in suite_rows:
        rows = [t for t in document["tasks"] if t["suite"] == suite]
        columns = _columns(rows)
        lines += ["", f"## {suite}", ""]
        lines += _table(["task", "instruction", "trials", *[f"{c} (%)" for c in columns]],
                        [[str(t["task_id"]), t["language"] or "", str(t["episodes"].get(STANDARD, 0)),
                          *[_pct(t["success"].get(c)) for c in columns]] for t in rows])
    lines += ["", "## Provenance", ""]
    lines += [f"- {name}: `{json.dumps(provenance[name])}`" for name in sorted(provenance)]
    return "\n".join(lines) + "\n"


def render_file(path: str | Path) -> str:
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable results file ({type(err).__name__}: {err})") from None
    return render_markdown(document, str(path))
