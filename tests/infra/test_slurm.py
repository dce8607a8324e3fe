"""The SLURM launch path: shell syntax, and a faked 2-node job on localhost whose ranks all join."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed_helper import free_port

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "infra" / "slurm" / "train.sbatch"
LAUNCH = REPO / "infra" / "slurm" / "launch.sh"


def test_scripts_pass_bash_syntax_check():
    for script in (SBATCH, LAUNCH):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_sbatch_requests_requeue_and_a_preemption_signal():
    text = SBATCH.read_text()
    assert "#SBATCH --requeue" in text
    assert "#SBATCH --signal=USR1@" in text
    assert "launch.sh" in text


@pytest.mark.distributed
def test_fake_two_node_job_on_localhost_joins_both_ranks():
    env_common = {
        **os.environ,
        "SLURM_JOB_NODELIST": "127.0.0.1",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "NPROC_PER_NODE": "1",
        "MASTER_PORT": str(free_port()),
        "ENTRYPOINT": str(REPO / "tests" / "infra" / "rendezvous_probe.py"),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",  # no scontrol: the launcher must fall back to the plain node list
    }
    nodes = [
        subprocess.Popen(
            ["bash", str(LAUNCH)],
            env={**env_common, "SLURM_NODEID": str(node)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [p.communicate(timeout=180)[0] for p in nodes]
    for p, out in zip(nodes, outputs):
        assert p.returncode == 0, out
    joined = "".join(outputs)
    assert "rank 0/2 joined" in joined and "rank 1/2 joined" in joined, joined
    assert joined.count("rank-sum 1") == 2  # 0 + 1: both ranks took part in one collective
    assert "rendezvous 127.0.0.1:" in outputs[0]
