"""Latency of the policy server under 1, 4 and 16 concurrent clients, with and without batching, in one run.

    python scripts/bench_serve.py [--checkpoint EXPORT_DIR] [--clients 1 4 16] [--requests 64] [--max-batch 16]
        [--output bench_serve.json]

Without ``--checkpoint`` a tiny untrained debug-flavor policy is exported to a temp folder (two cameras,
8-d state, 7-d action, H = 10, 10 Euler steps). Two servers run on 127.0.0.1 in this process, one serving
one request at a time (``max_batch = 1``) and one batching (``--max-batch``, ``--max-wait-ms``); for each
client count, ``--requests`` requests in all (split evenly over the clients, each an openpi
``WebsocketClientPolicy`` on its own thread sending back to back) go to one server, then to the other.
Per request: the round trip seen by the client. Prints and writes JSON: p50/p99/mean latency, requests/s
and the mean batch size per (clients, mode).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.server import PolicyServer
from torchtitan_vla.tools.debug_policy import export_debug_policy


def _observation(policy: Policy, image_size: int, rng: np.random.Generator) -> dict:
    obs = {key: rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for key in policy.key_map.images}
    obs[policy.key_map.state] = rng.normal(size=policy.state_dim).astype(np.float32)
    obs[policy.key_map.prompt] = "pick up the red cube and put it in the bowl"
    return obs


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _load(port: int, num_clients: int, per_client: int, observations: list[dict]) -> dict:
    """``num_clients`` clients each send ``per_client`` requests back to back; latency of each."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    clients = [WebsocketClientPolicy(host="127.0.0.1", port=port) for _ in range(num_clients)]
    barrier = threading.Barrier(num_clients)

    def run(i: int) -> list[tuple[float, int]]:
        barrier.wait()
        out = []
        for r in range(per_client):
            start = time.perf_counter()
            result = clients[i].infer(observations[(i + r) % len(observations)])
            out.append(((time.perf_counter() - start) * 1000, result["server_timing"]["batch_size"]))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(num_clients) as pool:
        calls = [c for per in pool.map(run, range(num_clients)) for c in per]
    wall = time.perf_counter() - start
    latencies = sorted(ms for ms, _ in calls)
    return {"clients": num_clients, "requests": len(calls), "p50_ms": statistics.median(latencies),
            "p99_ms": _percentile(latencies, 0.99), "mean_ms": statistics.fmean(latencies),
            "requests_per_s": len(calls) / wall, "mean_batch_size": statistics.fmean(b for _, b in calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="exported policy folder (default: a tiny debug policy)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=64, help="requests per (client count, mode)")
    parser.add_argument("--warmup", type=int, default=3, help="requests per server before timing")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--image-size", type=int, default=224, help="side of the client's uint8 images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--output", default=None, help="write the JSON report here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.checkpoint or export_debug_policy(Path(tmp), ["observation.images.front", "observation.images.wrist"],
                                                        state_dim=8, action_dim=7, horizon=10, image_size=224,
                                                        num_steps=10)
        policy = Policy.from_export(folder, device=args.device)
        rng = np.random.default_rng(0)
        observations = [_observation(policy, args.image_size, rng) for _ in range(16)]
        servers = {"one_at_a_time": PolicyServer(policy, port=0, max_batch=1, max_queue=64),
                   "batched": PolicyServer(policy, port=0, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                           max_queue=64)}
        for server in servers.values():
            server.start()
            _load(server.port, 1, args.warmup, observations)
        rows = []
        try:
            for num_clients in args.clients:
                per_client = max(1, args.requests // num_clients)
                for mode, server in servers.items():
                    row = {"mode": mode, **_load(server.port, num_clients, per_client, observations)}
                    print(json.dumps(row))
                    rows.append(row)
        finally:
            for server in servers.values():
                server.stop()
    report = {
        "checkpoint": args.checkpoint or "debug (untrained, 2 cameras, H=10, 10 Euler steps)",
        "device": args.device, "torch_threads": args.threads, "image_size": args.image_size,
        "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0], "results": rows,
    }
    print(json.dumps(report, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
