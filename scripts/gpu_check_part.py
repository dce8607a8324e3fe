"""Bookkeeping for scripts/gpu_check.sh: the environment record and each part's outcome in its JSON.

    python scripts/gpu_check_part.py env OUT/env.json WHEELS_LOG MODE
    python scripts/gpu_check_part.py finish NAME OUT/part.json RC WALL_S CAP_S PART_LOG
    python scripts/gpu_check_part.py skip NAME OUT/part.json REASON

``finish`` adds ``checks[NAME] = {status, rc, wall_s, cap_s}`` to the part's JSON (creating the file when
the part wrote none) and, unless the part succeeded, ``error``: the end of its log. Several parts may
share one JSON (the training sweep's three runs), hence the per-name entry.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

TIMEOUT_RCS = (124, 137)
ERROR_LINES = 30


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {"value": data}


def _record(path: Path, name: str, check: dict) -> None:
    data = _load(path)
    data.setdefault("checks", {})[name] = check
    path.write_text(json.dumps(data, indent=1))


def finish(name: str, path: Path, rc: int, wall_s: float, cap_s: float, log: Path) -> None:
    status = "ok" if rc == 0 else "timeout" if rc in TIMEOUT_RCS else "failed"
    check = {"status": status, "rc": rc, "wall_s": round(wall_s, 1), "cap_s": cap_s}
    if status != "ok":
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        check["error"] = "\n".join(lines[-ERROR_LINES:]) or f"exit status {rc}, no output"
    _record(path, name, check)


def _command(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"


def environment(path: Path, wheels_log: Path, mode: str) -> None:
    import torch

    cuda = torch.cuda.is_available()
    packages = {}
    for name in ("transformers", "tokenizers", "safetensors", "torchdata", "mujoco", "numpy"):
        try:
            packages[name] = __import__(name).__version__
        except ImportError as exc:
            packages[name] = f"missing: {exc}"
    data = {
        "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "cpu_count": len(os.sched_getaffinity(0)),
        "nvidia_smi": _command("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                               "--format=csv,noheader") if cuda else None,
        "commit": _command("git", "rev-parse", "--short", "HEAD"),
        "packages": packages,
        "wheels": wheels_log.read_text(errors="replace").strip()[-2000:] if wheels_log.is_file() else "",
    }
    existing = _load(path)
    path.write_text(json.dumps({**existing, **data}, indent=1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["env"] and len(argv) == 4:
        environment(Path(argv[1]), Path(argv[2]), argv[3])
    elif argv[:1] == ["finish"] and len(argv) == 7:
        finish(argv[1], Path(argv[2]), int(argv[3]), float(argv[4]), float(argv[5]), Path(argv[6]))
    elif argv[:1] == ["skip"] and len(argv) == 4:
        _record(Path(argv[2]), argv[1], {"status": "skipped", "reason": argv[3]})
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
