"""The OXE manifest and the norm-stats script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torchtitan_vla.data.oxe import ACTION_SPACES, load_oxe_manifest, oxe_sources

COMMON = {"bridge", "fractal", "kuka", "taco_play", "jaco_play", "berkeley_autolab_ur5", "language_table",
          "stanford_hydra", "austin_buds", "austin_sailor", "austin_sirius", "nyu_franka_play", "ucsd_kitchen",
          "furniture_bench", "droid"}


def test_oxe_manifest_entries_are_complete():
    entries = load_oxe_manifest()
    assert COMMON <= {e.name for e in entries}
    for e in entries:
        assert e.weight > 0 and e.repo_id.endswith("_lerobot") and e.rlds_name
        assert e.camera_keys and all(k.startswith("observation.images.") for k in e.camera_keys)
        assert set(e.wrist_camera_keys) <= set(e.camera_keys)
        assert e.state_key and e.action_key and e.action_space in ACTION_SPACES
    sources, weights = oxe_sources("/data/oxe", ["bridge", "droid"])
    assert [s.path for s in sources] == ["/data/oxe/bridge", "/data/oxe/droid"]
    assert weights == {"bridge": 1.0, "droid": 0.06} and sources[1].wrist_camera_keys
    with pytest.raises(ValueError, match=r"\['bridgee'\]"):
        oxe_sources("/data/oxe", ["bridgee"])


def test_oxe_manifest_errors_name_the_entry(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[[dataset]]\nname = "x"\nweight = 1.0\n')
    with pytest.raises(ValueError, match=r"dataset\[0\] \(x\): missing fields"):
        load_oxe_manifest(str(bad))


def test_compute_norm_stats_matches_numpy(lerobot_roots, episodes, tmp_path):
    out = tmp_path / "stats.json"
    script = Path(__file__).parents[2] / "scripts" / "compute_norm_stats.py"
    subprocess.run([sys.executable, str(script), lerobot_roots["v2.1"], "--out", str(out)],
                   check=True, capture_output=True)
    stats = json.loads(out.read_text())
    actions = np.concatenate([e["action"] for e in episodes]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-6)
    assert set(stats) == {"observation.state", "action"}
