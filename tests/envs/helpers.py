"""Shared by the Meta-World tests: skip the calling test module where Meta-World cannot render."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os

import pytest


def require_metaworld() -> None:
    """Call at the top of a test module, before it imports anything that imports mujoco."""
    # Offscreen rendering needs a GL backend chosen before mujoco is imported: osmesa works on any CPU.
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    if importlib.util.find_spec("metaworld") is None or importlib.util.find_spec("mujoco") is None:
        pytest.skip("metaworld/mujoco are not installed: pip install metaworld (see datasets/metaworld/README.md)",
                    allow_module_level=True)
    if os.environ["MUJOCO_GL"] == "osmesa" and ctypes.util.find_library("OSMesa") is None:
        pytest.skip("MUJOCO_GL=osmesa needs libOSMesa: apt-get install -y libosmesa6 (see datasets/metaworld/README.md)",
                    allow_module_level=True)
