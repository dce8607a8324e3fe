"""Serve an exported policy to openpi clients.

    python -m torchtitan_vla.serve --checkpoint DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]
        [--key-map FILE.toml --robot NAME] [--device cpu] [--num-steps N]
        [--max-message-mb MB] [--max-image-side PX] [--max-batch N] [--max-wait-ms MS] [--max-queue N]
        [--rtc-max-guidance-weight BETA] [--rtc-schedule exp|linear|ones|zeros]

Binds to 127.0.0.1 unless ``--host`` says otherwise (``--host 0.0.0.0`` exposes it to the network; pair
that with ``--api-key``). The API key can also come from the ``TORCHTITAN_VLA_API_KEY`` environment
variable, which keeps it out of the process list.

Limits: messages over ``--max-message-mb`` are refused from their frame header (default: twice the largest
observation the policy accepts); images must be uint8 with 3 channels and sides of 1 to ``--max-image-side``
pixels. Concurrent requests are batched: up to ``--max-batch`` requests that arrive within
``--max-wait-ms`` of the first run as one policy call, and a request that finds ``--max-queue`` others
waiting gets a "server busy" error frame. ``--max-batch 1`` serves one request at a time.

Real-time chunking (docs/realtime.md): requests may carry ``prev_actions`` and ``inference_delay``; the
metadata's ``real_time_chunking`` says how they are answered (prefix conditioning for an export trained
with training-time RTC, guidance otherwise), and ``--rtc-*`` override the export's guidance settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import get_args

from torchtitan_vla.config.model import RTCSchedule

from .key_map import load_key_map
from .policy import DEFAULT_MAX_IMAGE_SIDE, Policy
from .server import PolicyServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchtitan_vla.serve", description=__doc__.split("\n")[1])
    parser.add_argument("--checkpoint", required=True, help="exported policy folder (safetensors shards + index, config.json, tokenizer.json)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("TORCHTITAN_VLA_API_KEY"),
                        help="require 'Authorization: Api-Key KEY' from clients (default: $TORCHTITAN_VLA_API_KEY)")
    parser.add_argument("--key-map", default=None, help="TOML file of per-robot observation key maps")
    parser.add_argument("--robot", default=None, help="robot table of --key-map to use")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-steps", type=int, default=None, help="Euler steps per chunk (default: the export's)")
    parser.add_argument("--max-message-mb", type=float, default=None,
                        help="largest accepted message in MiB (default: twice the largest accepted observation)")
    parser.add_argument("--max-image-side", type=int, default=DEFAULT_MAX_IMAGE_SIDE,
                        help=f"longest accepted image side in pixels (default {DEFAULT_MAX_IMAGE_SIDE})")
    parser.add_argument("--max-batch", type=int, default=8, help="requests per policy call at most (default 8)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0,
                        help="how long a batch waits for more requests after its first (default 2)")
    parser.add_argument("--max-queue", type=int, default=32, help="requests waiting at most (default 32)")
    parser.add_argument("--rtc-max-guidance-weight", type=float, default=None,
                        help="real-time chunking's guidance clip beta (default: the export's action_expert value)")
    parser.add_argument("--rtc-schedule", choices=get_args(RTCSchedule), default=None,
                        help="real-time chunking's soft mask over the overlap (default: the export's)")
    args = parser.parse_args(argv)
    for name in ("max_image_side", "max_batch", "max_queue"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0 or (args.max_message_mb is not None and args.max_message_mb <= 0):
        parser.error("--max-wait-ms must be >= 0 and --max-message-mb > 0")
    if (args.key_map is None) != (args.robot is None):
        parser.error("--key-map and --robot go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    key_map = load_key_map(args.key_map, args.robot) if args.key_map else None
    policy = Policy.from_export(args.checkpoint, device=args.device, key_map=key_map, num_steps=args.num_steps)
    policy.max_image_side = args.max_image_side
    policy.set_rtc(args.rtc_max_guidance_weight, args.rtc_schedule)
    max_message_bytes = int(args.max_message_mb * 2**20) if args.max_message_mb else None
    PolicyServer(policy, host=args.host, port=args.port, api_key=args.api_key, max_message_bytes=max_message_bytes,
                 max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
