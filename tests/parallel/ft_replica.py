"""One replica group of a torchft job, for test_fault_tolerance.py: the tiny VLA (one process, a plain
module) trained through ``ReplicaGroup`` until the job's step reaches ``--steps``. Each group draws its
own batches (seeded by replica id and step), so only the torchft gradient average and healing can
keep the groups' weights equal. It stops at the step written in ``--stop-file`` (the test decides once
a restarted group has rejoined), at the latest at ``--steps``. Writes the job step after every step to
``--progress`` and, at the end, what it did (``--out``: JSON) and its final weights (``--out`` + ``.pt``)."""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from tests.distributed_helper import free_port
from tests.models.vla.helpers import make_batch, tiny_vla
from tests.parallel.dist_checks import SeededByBatch
from torchtitan_vla.config.fault_tolerance import FaultTolerance
from torchtitan_vla.models.vla import ForwardOptions
from torchtitan_vla.parallel.fault_tolerance import ReplicaGroup
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.loss import LossWeights, weighted_total


def stop_step(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return default


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replica-id", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--progress", required=True)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--min-replicas", type=int, default=1)
    args = parser.parse_args()
    # The group's own store (torchrun provides one; a one-process group here makes its own).
    port = free_port()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # noqa: F841
    torch.set_num_threads(1)
    model = tiny_vla()
    group = ReplicaGroup(FaultTolerance(enable=True, replica_id=args.replica_id, group_size=2, min_replicas=args.min_replicas,
                                        timeout_s=10, quorum_timeout_s=60), device_type="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    group.track("model", model.load_state_dict, model.state_dict)
    group.track("optimizer", optimizer.load_state_dict, optimizer.state_dict)
    record = {"replica": args.replica_id, "steps": [], "participants": [], "losses": []}
    weights = LossWeights()
    while group.step < min(args.steps, stop_step(args.stop_file, args.steps)):
        group.start_quorum()  # a group that is behind heals here
        optimizer.zero_grad()
        step = group.step
        batch = make_batch(model, batch_size=2, seed=1000 * args.replica_id + step)
        out = forward_backward(SeededByBatch(model, step), [batch], weights=weights, options=ForwardOptions(),
                               dp_mesh=None)
        group.average_gradients(model)
        if group.should_commit():  # only a step every group agrees is good
            optimizer.step()
        record["steps"].append(step)
        record["participants"].append(group.participants)
        record["losses"].append(weighted_total(out.term_losses(out.sums), weights))
        with open(args.progress, "w") as f:
            f.write(str(group.step))
        time.sleep(args.step_sleep)
    torch.save(model.state_dict(), args.out + ".pt")
    with open(args.out, "w") as f:
        json.dump(record, f)
    group.shutdown()


if __name__ == "__main__":
    main()
