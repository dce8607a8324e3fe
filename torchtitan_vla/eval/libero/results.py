"""Results of an evaluation: the append-only episode log (resume) and the final JSON.

``episodes.jsonl``: the first line is ``{"provenance": {...}}``, then one line per finished episode,
appended and flushed to disk as each episode ends. A rerun with the same arguments reads it, skips the
episodes it holds and appends the rest; a rerun whose provenance differs is refused (naming the field), so
one file never mixes two settings. A last line cut short by a kill is dropped.

``results.json`` (written atomically from the log): the provenance, every episode, and per task and per
suite the success rate of each variant (``standard`` and the diagnostics).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from .episode import KEY_FIELDS
from .plan import STANDARD

EPISODES_FILE = "episodes.jsonl"
RESULTS_FILE = "results.json"
FORMAT = "torchtitan_vla/libero-eval/1"
# Provenance that may differ between an interrupted run and its resumption.
_RESUMABLE_FIELDS = ("workers", "versions", "render")


class ResultsLog:
    """The episode log of one evaluation folder (created, or reopened to resume)."""

    def __init__(self, folder: str | Path, provenance: dict[str, Any]):
        self.folder = Path(folder)
        self.path = self.folder / EPISODES_FILE
        self.provenance = provenance
        self.records: list[dict[str, Any]] = []
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._reopen()
        else:
            self._write_line({"provenance": provenance})

    def _reopen(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a line cut short by a kill is dropped
        if len(complete) != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        lines = complete.decode().splitlines()
        try:
            previous = json.loads(lines[0])["provenance"]
        except (IndexError, ValueError, KeyError):
            raise ValueError(f"{self.path}: not an episode log (its first line lacks the provenance)") from None
        for name in sorted(set(previous) | set(self.provenance)):
            if name not in _RESUMABLE_FIELDS and previous.get(name) != self.provenance.get(name):
                raise ValueError(f"{self.path} was written with different settings ({name}: "
                                 f"{previous.get(name)!r} there, {self.provenance.get(name)!r} now); "
                                 "use another --output or delete it")
        self.records = [json.loads(line) for line in lines[1:]]

    def _write_line(self, obj: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def done_keys(self) -> set[tuple]:
        return {record_key(r) for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        self._write_line(record)
        self.records.append(record)


def record_key(record: dict[str, Any]) -> tuple:
    """The ``EpisodeSpec.key`` of the episode a results-file record holds."""
    return tuple(record[name] for name in KEY_FIELDS)


def _rate(records: list[dict[str, Any]]) -> float:
    return sum(r["success"] for r in records) / len(records)


def summarize(records: list[dict[str, Any]], provenance: dict[str, Any]) -> dict[str, Any]:
    """The results document: per task (``base_suite``, ``task_id``) and variant, episodes and success rate;
    per suite and variant, the mean over its tasks."""
    by_task: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_task[(record["base_suite"], record["task_id"])][record["variant"]].append(record)
    tasks = []
    for (suite, task_id), variants in sorted(by_task.items()):
        standard = variants.get(STANDARD, [])
        tasks.append({
            "suite": suite, "task_id": task_id,
            "language": standard[0]["prompt"] if standard else None,
            "episodes": {v: len(rs) for v, rs in sorted(variants.items())},
            "success": {v: _rate(rs) for v, rs in sorted(variants.items())},
        })
    suites: dict[str, dict[str, Any]] = {}
    for suite in sorted({t["suite"] for t in tasks}):
        rows = [t for t in tasks if t["suite"] == suite]
        variants = sorted({v for t in rows for v in t["success"]})
        suites[suite] = {
            "tasks": len(rows),
            "episodes": sum(sum(t["episodes"].values()) for t in rows),
            "success": {v: sum(t["success"][v] for t in rows if v in t["success"])
                        / sum(v in t["success"] for t in rows) for v in variants},
        }
    return {"format": FORMAT, "provenance": provenance, "suites": suites, "tasks": tasks,
            "episodes": sorted(records, key=lambda r: (r["base_suite"], r["task_id"], r["variant"], r["init_state"]))}


def write_json(path: str | Path, document: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(tmp, path)
