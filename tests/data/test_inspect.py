"""The batch inspector writes one self-contained page of what the model receives, from a config."""

from __future__ import annotations

import re

from tests.data.helpers import CAMERAS
from torchtitan_vla.data.inspect import main
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer


def test_inspector_page_shows_every_camera_the_instruction_and_the_mask(lerobot_roots, cc12m_root, tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    build_debug_tokenizer(tokenizer)
    root = lerobot_roots["v3.0"]
    config = tmp_path / "job.toml"
    config.write_text(f"""
[model]
flavor = "debug"
tokenizer_path = "{tokenizer}"
[action_expert]
action_horizon = 5
max_action_dim = 8
max_state_dim = 8
prefix_attention = "bidirectional"
[data]
image_size = 32
image_min_pixels = 1024
image_max_pixels = 1024
max_seq_len = 128
[[data.sources]]
name = "robot"
kind = "lerobot"
path = "{root}"
action_dims = [3, 0]
[[data.sources]]
name = "captions"
kind = "cc12m"
path = "{cc12m_root}"
""")
    out = tmp_path / "page.html"
    assert main(["--config", str(config), "--n", "3", "--out", str(out)]) == 0
    page = out.read_text()
    # 3 robot samples x 2 cameras, and the images of 3 (packed) caption samples, all inline PNGs.
    cameras = re.findall(r'<img class="cam" title="([^"]*)" src="data:image/png;base64,', page)
    assert sorted(c for c in cameras if c in CAMERAS) == sorted(CAMERAS * 3)
    assert len(cameras) - 3 * len(CAMERAS) >= 3
    reader = LeRobotReader(root)
    tasks = re.findall(r'instruction: <span class="instruction">([^<]*)</span>', page)
    assert len(tasks) == 3 and set(tasks) <= set(reader.tasks.values())
    assert len(re.findall(r'class="plot"', page)) == 3 * 4  # state and actions, before and after
    assert 'class="tok loss"' in page  # the captions' text targets are coloured
    assert len(re.findall(r'<img class="mask"', page)) == 1


def test_inspector_names_a_bad_config(tmp_path, capsys):
    config = tmp_path / "job.toml"
    config.write_text("[[data.sources]]\nname = 'robot'\nkind = 'lerobot'\npath = '/nonexistent'\n")
    assert main(["--config", str(config)]) == 2
    assert "error:" in capsys.readouterr().err


def test_unpatchify_gives_back_the_picture_the_vision_tower_receives():
    import numpy as np

    from torchtitan_vla.data.inspect_draw import unpatchify
    from torchtitan_vla.processing.processor import preprocess_images

    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pixels, grid = preprocess_images([image], resize_to=(64, 96))
    np.testing.assert_array_equal(unpatchify(pixels, grid[0]), image)
