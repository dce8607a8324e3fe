"""The OXE manifest (``datasets/oxe/oxe_manifest.toml``): LeRobot conversions, key maps, mixture weights."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..config.data import DataSource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

ACTION_SPACES = ("eef_delta", "eef_delta_2d", "eef_absolute", "joint_velocity", "joint_position")
DEFAULT_MANIFEST = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "oxe", "oxe_manifest.toml")


@dataclass
class OXEDataset:
    name: str
    """Short name; the data source's name."""
    rlds_name: str
    """The dataset's name in the OXE RLDS release."""
    repo_id: str
    """Hub id of its LeRobot conversion."""
    weight: float
    """Relative sampling weight in the mixture."""
    robot: str
    """Robot (embodiment) name."""
    camera_keys: list[str]
    """LeRobot video feature keys used as cameras, in prompt order."""
    wrist_camera_keys: list[str]
    """Cameras mounted on the wrist (no crop/rotation augmentation)."""
    state_key: str
    """Feature key of the proprioceptive state."""
    action_key: str
    """Feature key of the action."""
    action_space: str
    """What the action means (one of ACTION_SPACES)."""


def load_oxe_manifest(path: str = DEFAULT_MANIFEST) -> list[OXEDataset]:
    """Parse and check the manifest; errors name the entry and the field."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    entries, names = [], set()
    for i, item in enumerate(raw.get("dataset", [])):
        where = f"{path}: dataset[{i}] ({item.get('name', '?')})"
        fields = OXEDataset.__dataclass_fields__
        missing = [k for k in fields if k not in item]
        extra = [k for k in item if k not in fields]
        if missing or extra:
            raise ValueError(f"{where}: missing fields {missing}, unknown fields {extra}")
        entry = OXEDataset(**item)
        if entry.name in names:
            raise ValueError(f"{where}: duplicate name")
        if not (isinstance(entry.weight, int | float) and entry.weight > 0):
            raise ValueError(f"{where}: weight must be > 0, got {entry.weight!r}")
        if not entry.camera_keys or not set(entry.wrist_camera_keys) <= set(entry.camera_keys):
            raise ValueError(f"{where}: needs cameras, and wrist cameras must be among them")
        if entry.action_space not in ACTION_SPACES:
            raise ValueError(f"{where}: action_space must be one of {ACTION_SPACES}")
        names.add(entry.name)
        entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: no [[dataset]] entries")
    return entries


def oxe_sources(root: str, names: list[str] | None = None, path: str = DEFAULT_MANIFEST,
                normalization: str = "mean_std") -> tuple[list[DataSource], dict[str, float]]:
    """LeRobot data sources at ``<root>/<name>`` for the chosen manifest entries, and their mixture weights."""
    entries = {e.name: e for e in load_oxe_manifest(path)}
    unknown = sorted(set(names or []) - set(entries))
    if unknown:
        raise ValueError(f"OXE datasets {unknown} are not in the manifest {path}")
    chosen = [entries[n] for n in names] if names else list(entries.values())
    sources = [
        DataSource(name=e.name, kind="lerobot", path=os.path.join(root, e.name), camera_keys=list(e.camera_keys),
                   wrist_camera_keys=list(e.wrist_camera_keys), state_key=e.state_key, action_key=e.action_key,
                   normalization=normalization)
        for e in chosen
    ]
    return sources, {e.name: float(e.weight) for e in chosen}
