"""Shared helpers of the trainer tests: run the stand-in curriculum in-process, read its outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.train.standin import standin_spec
from torchtitan_vla.config import load_config, parse_command_line, resolve_stages
from torchtitan_vla.train.main import run

HERE = Path(__file__).resolve().parent

CONFIG = HERE / "standin.toml"
REPO = HERE.parents[1]
STANDIN_COMMAND = [sys.executable, "-m", "tests.train.run_standin"]
"""``train.py`` with the stand-in model and data as a process; run it with ``cwd=REPO`` (``tests`` is a package)."""


def train(dump_folder: Path, *overrides: str, name: str = "standin") -> tuple[int, Path]:
    """Run the stand-in curriculum in this process; returns (exit code, run folder)."""
    argv = ["--config", str(CONFIG), f"--job.dump_folder={dump_folder}", f"--job.name={name}", *overrides]
    cli = parse_command_line(argv)
    loaded = load_config(cli.config_path, cli.overrides)
    return run(loaded, resolve_stages(loaded), spec=standin_spec()), Path(dump_folder) / name


def read_jsonl(run_folder: Path) -> list[dict]:
    return [json.loads(line) for line in (run_folder / "metrics.jsonl").read_text().splitlines()]


def losses_by_step(records: list[dict]) -> dict[int, float]:
    """Training loss per step; a step logged twice (a replay after a crash) keeps its last value."""
    return {r["step"]: r["loss"] for r in records if "loss" in r}
