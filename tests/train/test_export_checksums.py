"""Exported policies carry a CRC-32 per file in their index; ``Policy.from_export`` (the server loads
through it) refuses a corrupt file with one line naming it instead of serving wrong actions."""

import json
import shutil

import pytest

from torchtitan_vla.parallel.weights import INDEX_NAME
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.tools.debug_policy import export_debug_policy


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return export_debug_policy(tmp_path_factory.mktemp("export"), ["cam.top"], state_dim=3, action_dim=2)


def test_index_records_a_checksum_for_every_file(export_dir):
    recorded = json.loads((export_dir / INDEX_NAME).read_text())["metadata"]["crc32"]
    files = {str(p.relative_to(export_dir)) for p in export_dir.rglob("*") if p.is_file() and p.name != INDEX_NAME}
    assert set(recorded) == files and "config.json" in files and any(f.endswith(".safetensors") for f in files)


@pytest.mark.parametrize("victim", ["shard", "config.json", "tokenizer.json"])
def test_flipped_byte_is_refused_naming_the_file(export_dir, tmp_path, victim):
    copy = tmp_path / "policy"
    shutil.copytree(export_dir, copy)
    if victim == "shard":
        victim = sorted(set(json.loads((copy / INDEX_NAME).read_text())["weight_map"].values()))[-1]
    data = bytearray((copy / victim).read_bytes())
    data[len(data) - 9] ^= 0x01  # one bit in a tensor's last bytes (or a config value): same size, loads silently
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{victim} is corrupt") as err:
        Policy.from_export(copy)
    assert "\n" not in str(err.value)
