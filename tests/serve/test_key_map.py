"""Per-robot observation key maps: the shipped file loads, and mistakes are named."""

from pathlib import Path

import pytest

from torchtitan_vla.serve.key_map import ObservationKeyMap, load_key_map

REPO = Path(__file__).resolve().parents[2]


def test_shipped_metaworld_map_feeds_the_metaworld_camera():
    key_map = load_key_map(REPO / "datasets/metaworld/key_map.toml", "metaworld")
    assert key_map.images == {"observation/image": "observation.images.corner2"}
    assert (key_map.state, key_map.prompt) == ("observation/state", "prompt")
    key_map.check_cameras(["observation.images.corner2"])


def test_default_map_uses_openpi_keys_in_camera_order():
    key_map = ObservationKeyMap.default(["cam.a", "cam.b", "cam.c"])
    assert key_map.images == {"observation/image": "cam.a", "observation/wrist_image": "cam.b",
                              "observation/image_2": "cam.c"}


def test_mistakes_are_named(tmp_path):
    path = tmp_path / "maps.toml"
    path.write_text('[robots.arm]\nimages = { "observation/image" = "cam.top" }\nstat = "x"\n')
    with pytest.raises(ValueError, match=r"unknown keys \['stat'\]"):
        load_key_map(path, "arm")
    with pytest.raises(ValueError, match=r"no \[robots.aloha\] table"):
        load_key_map(path, "aloha")
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        load_key_map(tmp_path / "nowhere.toml", "arm")
    with pytest.raises(ValueError, match=r"cameras without a client key \['cam.wrist'\]"):
        ObservationKeyMap(images={"observation/image": "cam.top"}).check_cameras(["cam.top", "cam.wrist"])
