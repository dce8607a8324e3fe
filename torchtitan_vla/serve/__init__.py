"""Serving: an exported policy in-process (``Policy``) or over openpi's websocket protocol (``PolicyServer``,
``python -m torchtitan_vla.serve``)."""

from .key_map import ObservationKeyMap, load_key_map
from .policy import Policy
from .server import PolicyServer

__all__ = ["ObservationKeyMap", "Policy", "PolicyServer", "load_key_map"]
