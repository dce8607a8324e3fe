"""Which client observation key feeds which dataset camera, the state and the prompt.

openpi clients send robot-specific keys (LIBERO: ``observation/image``, ``observation/wrist_image``,
``observation/state``, ``prompt``); the policy was trained on a dataset's own keys (e.g.
``observation.images.front``). A key map per robot translates one into the other. Maps live in a TOML
file with one table per robot::

    [robots.libero]
    images = { "observation/image" = "observation.images.image", "observation/wrist_image" = "observation.images.wrist_image" }
    state = "observation/state"
    prompt = "prompt"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchtitan_vla.config import load_toml

# openpi's LIBERO client keys; the default map gives them to the dataset's cameras in order.
DEFAULT_IMAGE_KEYS = ("observation/image", "observation/wrist_image")
DEFAULT_STATE_KEY = "observation/state"
DEFAULT_PROMPT_KEY = "prompt"
SUBTASK_KEY = "subtask"
"""Request key of a given subtask, and response key of the subtask the actions were conditioned on
(pi0.5's hierarchy; clients that do not know it neither send nor read it)."""


@dataclass
class ObservationKeyMap:
    images: dict[str, str] = field(default_factory=dict)
    """Client image key -> dataset camera key (the camera keys of the exported policy)."""

    state: str = DEFAULT_STATE_KEY
    """Client key of the (unnormalized) proprioceptive state vector."""

    prompt: str = DEFAULT_PROMPT_KEY
    """Client key of the instruction text."""

    @classmethod
    def default(cls, camera_keys: list[str]) -> ObservationKeyMap:
        """openpi's LIBERO-style keys: ``observation/image`` for the first camera, ``observation/wrist_image``
        for the second, ``observation/image_<i>`` for any further one."""
        names = [DEFAULT_IMAGE_KEYS[i] if i < len(DEFAULT_IMAGE_KEYS) else f"observation/image_{i}" for i in range(len(camera_keys))]
        return cls(images=dict(zip(names, camera_keys)))

    def check_cameras(self, camera_keys: list[str]) -> None:
        """Every camera of the policy must be fed by exactly one client key."""
        fed = list(self.images.values())
        missing = [k for k in camera_keys if k not in fed]
        unknown = [k for k in fed if k not in camera_keys]
        if missing or unknown:
            raise ValueError(
                f"key map does not match the policy's cameras {camera_keys}: "
                f"cameras without a client key {missing}, mapped names that are not cameras {unknown}"
            )


def load_key_map(path: str | Path, robot: str) -> ObservationKeyMap:
    """Read robot ``robot``'s table from a key-map TOML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"key-map file not found: {path}")
    robots: dict[str, Any] = load_toml(str(path)).get("robots", {})
    if robot not in robots:
        raise ValueError(f"{path}: no [robots.{robot}] table (robots: {sorted(robots)})")
    table = dict(robots[robot])
    unknown = sorted(set(table) - {"images", "state", "prompt"})
    if unknown:
        raise ValueError(f"{path}: [robots.{robot}] has unknown keys {unknown} (known: images, state, prompt)")
    if not isinstance(table.get("images", {}), dict):
        raise ValueError(f"{path}: robots.{robot}.images must be a table of client key = camera key")
    return ObservationKeyMap(**table)
