"""Round-trip latency of the policy server against in-process ``Policy.infer`` calls.

    python scripts/bench_serve.py [--checkpoint EXPORT_DIR] [--iters 20] [--warmup 3] [--device cpu]

Without ``--checkpoint`` a tiny untrained debug-flavor policy is exported to a temp folder (two cameras,
8-d state, 7-d action). The server runs on 127.0.0.1 in this process (on its own thread) and is driven by
openpi's ``WebsocketClientPolicy``; the same observations go through ``Policy.infer`` directly. The
difference is the serving overhead: msgpack packing, the websocket hop and the executor hand-off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
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


def _timed(fn, obs) -> float:
    start = time.perf_counter()
    fn(obs)
    return (time.perf_counter() - start) * 1000


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"mean_ms": statistics.fmean(times), "p50_ms": statistics.median(times),
            "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "n": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="exported policy folder (default: a tiny debug policy)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224, help="side of the client's uint8 images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.checkpoint or export_debug_policy(Path(tmp), ["observation.images.front", "observation.images.wrist"],
                                                        state_dim=8, action_dim=7, horizon=10, image_size=224,
                                                        num_steps=10)
        policy = Policy.from_export(folder, device=args.device)
        rng = np.random.default_rng(0)
        observations = [_observation(policy, args.image_size, rng) for _ in range(args.warmup + args.iters)]
        server = PolicyServer(policy, host="127.0.0.1", port=0)
        server.start()
        try:
            client = WebsocketClientPolicy(host="127.0.0.1", port=server.port)
            served_infer_ms: list[float] = []

            def remote(obs):
                served_infer_ms.append(client.infer(obs)["server_timing"]["infer_ms"])

            # Alternate the two paths call by call, so both see the same machine load.
            in_process, served = [], []
            for i, obs in enumerate(observations):
                local_ms, remote_ms = _timed(policy.infer, obs), _timed(remote, obs)
                if i >= args.warmup:
                    in_process.append(local_ms)
                    served.append(remote_ms)
        finally:
            server.stop()
    inside = served_infer_ms[args.warmup:]
    report = {
        "checkpoint": args.checkpoint or "debug (untrained, 2 cameras, H=10, 10 Euler steps)",
        "device": args.device,
        "torch_threads": args.threads,
        "image_size": args.image_size,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "in_process": _summary(in_process),
        "server_round_trip": _summary(served),
        "serving_overhead_ms": statistics.median(served) - statistics.median(in_process),
        "server_side_infer": _summary(inside),
        # Per call: round trip minus the server's own inference time (packing, websocket, thread hand-off).
        "wire_overhead_ms": _summary([total - infer for total, infer in zip(served, inside)]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
