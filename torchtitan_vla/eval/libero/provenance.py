"""What a LIBERO number was measured with, recorded in every result file.

``REQUIRED`` are the fields a result must carry to be rendered (``report.py`` refuses it otherwise): the
content hash of what produced the actions, the trials per task and their init-state indices, the seeds,
the protocol's settings (max steps, wait steps, replan interval, image size, simulated delay) and the
simulator and package versions.
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from types import ModuleType

REQUIRED = ("policy", "checkpoint_hash", "trials_per_task", "init_states", "seeds", "max_steps", "num_wait_steps",
            "replan_steps", "image_size", "delay", "versions")


def source_hash(module: ModuleType) -> str:
    """``sha256:<hex>`` of a module's source file: the 'checkpoint' of a scripted controller."""
    return "sha256:" + hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions(env_module: ModuleType, extra_packages: tuple[str, ...] = ()) -> dict[str, str | None]:
    """The simulator's versions (``libero_versions()`` of the environment module), this package's and its
    commit, numpy's and those of ``extra_packages`` (torch when the policy runs in-process)."""
    found: dict[str, str | None] = dict(env_module.libero_versions())
    for name in ("torchtitan_vla", "numpy", *extra_packages):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["torchtitan_vla_commit"] = _commit()
    return found


def missing_fields(provenance: dict) -> list[str]:
    """The required fields a provenance lacks (absent or null)."""
    return [name for name in REQUIRED if provenance.get(name) is None]
