"""Rank-aware logging: rank 0 prints timestamped lines; other ranks stay quiet unless asked."""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("torchtitan_vla")


def init_logging(log_all_ranks: bool = False) -> None:
    """Configure the project logger once per process.

    The rank comes from torchrun's ``RANK`` variable, so this works before the process group exists.
    """
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    logger.handlers.clear()
    logger.propagate = False
    if rank != 0 and not log_all_ranks:
        logger.setLevel(logging.WARNING)  # warnings and errors of every rank still reach stderr
    else:
        logger.setLevel(logging.INFO)
    prefix = f"[rank{rank}] " if world > 1 and log_all_ranks else ""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
