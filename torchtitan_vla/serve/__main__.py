"""Serve an exported policy to openpi clients.

    python -m torchtitan_vla.serve --checkpoint DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]
        [--key-map FILE.toml --robot NAME] [--device cpu] [--num-steps N]

Binds to 127.0.0.1 unless ``--host`` says otherwise (``--host 0.0.0.0`` exposes it to the network; pair
that with ``--api-key``). The API key can also come from the ``TORCHTITAN_VLA_API_KEY`` environment
variable, which keeps it out of the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .key_map import load_key_map
from .policy import Policy
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
    args = parser.parse_args(argv)
    if (args.key_map is None) != (args.robot is None):
        parser.error("--key-map and --robot go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    key_map = load_key_map(args.key_map, args.robot) if args.key_map else None
    policy = Policy.from_export(args.checkpoint, device=args.device, key_map=key_map, num_steps=args.num_steps)
    PolicyServer(policy, host=args.host, port=args.port, api_key=args.api_key).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
