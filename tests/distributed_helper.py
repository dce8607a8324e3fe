"""Launch a Python script under ``torchrun --nproc_per_node=N`` on CPU (gloo) from a test.

The script runs in a fresh process group per launch; its stdout/stderr come back in the result, and
a non-zero exit fails the calling test with the output attached.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(
    script: str | Path,
    args: list[str] | None = None,
    nproc: int = 2,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``script`` with ``nproc`` CPU processes; returns the completed process."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--nnodes=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{free_port()}",
        str(script),
        *(args or []),
    ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO_ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"torchrun {script} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def run_checks(build_checks) -> None:
    """The ``main`` of a check script launched by ``run_torchrun``: ``SCRIPT --out FILE [check ...]``.

    ``build_checks()`` (called after the process group exists) returns ``{name: () -> values}``; the named
    checks (all by default) run on every rank and rank 0 writes ``{name: values}`` as JSON to ``--out``, so
    the calling test asserts on returned values rather than on printed lines.
    """
    import argparse
    import json

    import torch.distributed as dist

    from torchtitan_vla.utils.distributed import init_distributed

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="JSON file rank 0 writes the measured values into")
    parser.add_argument("checks", nargs="*")
    args = parser.parse_args()
    init_distributed()
    checks = build_checks()
    results = {name: checks[name]() for name in args.checks or list(checks)}
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    dist.destroy_process_group()


def checked_values(script: str | Path, folder: Path, nproc: int = 2, timeout: float = 300) -> dict:
    """Launch a ``run_checks`` script and return what its checks measured (``{name: values}``)."""
    import json

    out = Path(folder) / "results.json"
    run_torchrun(script, ["--out", str(out)], nproc=nproc, timeout=timeout)
    return json.loads(out.read_text())
