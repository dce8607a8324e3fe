"""The generator writes the toy world's data in all three real formats, deterministically."""

import numpy as np
import pytest

from torchtitan_vla.config.data import Data
from torchtitan_vla.data.lerobot import LeRobotReader
from torchtitan_vla.data.prompts import PromptBuilder
from torchtitan_vla.data.web import cc12m_document, decode_image, obelics_document, open_web_dataset
from torchtitan_vla.envs.toyworld import demo_episode, sample_scene
from torchtitan_vla.envs.toyworld.generate import (
    CAMERA_KEY,
    GenerateConfig,
    episode_scene_seed,
    generate,
    main,
    world_of,
)
from torchtitan_vla.envs.toyworld.world import KINDS, WorldConfig
from torchtitan_vla.processing.tokenizer import Tokenizer


def _tokenizer(out):
    return Tokenizer.from_file(out / "tokenizer.json")


def _prompts(out):
    return PromptBuilder(_tokenizer(out), Data(image_min_pixels=96 * 96, image_max_pixels=96 * 96))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyworld")
    config = GenerateConfig(seed=3, episodes=6, captions=7, documents=4, shard_size=5)
    assert generate(str(out), config)
    return out, config


def test_robot_episodes_are_lerobot_v3_with_instructions(toy_data):
    out, config = toy_data
    reader = LeRobotReader(str(out / "robot"))
    assert reader.version == "v3.0" and reader.camera_keys == [CAMERA_KEY]
    assert len(reader.episodes) == config.episodes
    assert reader.state.shape[1] == 2 and reader.action.shape[1] == 2
    for episode in reader.episodes:
        assert episode.task.split()[-1] in KINDS
        first = reader.state[episode.start]
        last = reader.state[episode.start + episode.length - 1]
        assert np.linalg.norm(last - first) > 0.3, "the agent travels to the target"
    decoded = reader.frames(reader.episodes[1], 2)[CAMERA_KEY]
    rendered = demo_episode(sample_scene(episode_scene_seed(config, 1), config.world))["frames"][CAMERA_KEY][2]
    assert decoded.shape == rendered.shape == (96, 96, 3)
    assert np.abs(decoded.astype(int) - rendered).mean() < 3, "the video keeps the rendered image"


def test_captions_are_cc12m_shards_the_data_pipeline_reads(toy_data):
    out, config = toy_data
    path = str(out / "web" / "captions")
    examples = list(open_web_dataset("cc12m", path, "train", 0, 1))
    assert len(examples) == config.captions and len(list((out / "web" / "captions").glob("*.tar"))) == 2
    text = examples[0]["txt"]
    assert " at the " in text and "The agent is at" in text
    assert decode_image(examples[0]["jpg"], path, None).size == (96, 96)
    doc = cc12m_document(examples[0], _prompts(out), path, None)
    assert text in _tokenizer(out).decode([t for t in doc.labels if t >= 0])


def test_documents_are_obelics_parquet_the_data_pipeline_reads(toy_data):
    out, config = toy_data
    path = str(out / "web" / "documents")
    examples = list(open_web_dataset("obelics", path, "train", 0, 1))
    assert len(examples) == config.documents
    doc = examples[0]
    assert [t is None for t in doc["texts"]] == [False, True, False, True, False]
    assert [i is None for i in doc["images"]] == [True, False, True, False, True]
    assert decode_image(doc["images"][1], path, None).size == (96, 96)
    packed = obelics_document(doc, _prompts(out), path, None)
    assert len(packed.pixel_values) == 2
    assert _tokenizer(out).decode(packed.input_ids).startswith("Here is a table with three shapes.")


def test_tokenizer_knows_the_world_words(toy_data):
    out, _ = toy_data
    tokenizer = _tokenizer(out)
    for color in ("red", "green", "blue", "yellow"):
        for kind in KINDS:
            assert len(tokenizer.encode(f"move to the {color} {kind}")) == 5


def test_generation_is_deterministic_and_skips_when_present(toy_data, tmp_path):
    out, config = toy_data
    assert not generate(str(out), config), "identical data already there: nothing written"
    other = tmp_path / "again"
    generate(str(other), config)
    for part in ("robot/meta/stats.json", "robot/data/chunk-000/file-000.parquet", "web/documents/train-00000.parquet",
                 "tokenizer.json"):
        assert (other / part).read_bytes() == (out / part).read_bytes(), part
    with pytest.raises(FileExistsError, match="other settings \\(seed: 3 there, 4 wanted\\)"):
        generate(str(out), GenerateConfig(seed=4, episodes=6, captions=7, documents=4, shard_size=5))


def test_cli_names_what_differs_from_the_data_already_there(toy_data):
    """Data of an older world is never overwritten; the one-line error says which setting changed."""
    out, config = toy_data
    args = ["--out", str(out), "--seed", "3", "--episodes", "6", "--captions", "7", "--documents", "4"]
    with pytest.raises(SystemExit, match="world.shared_attributes: False there, True wanted"):
        main([*args, "--shared-attributes"])
    assert world_of(str(out)) == config.world


def test_cli_rejects_bad_counts(tmp_path):
    with pytest.raises(SystemExit, match="--episodes must be >= 1"):
        main(["--out", str(tmp_path), "--episodes", "0"])


def test_the_data_records_its_world_for_the_evaluation(toy_data, tmp_path):
    """world_of reads back the exact world the data came from, so evaluation tables match the training ones."""
    out, config = toy_data
    assert world_of(str(out)) == config.world
    hard = GenerateConfig(seed=3, episodes=2, captions=2, documents=2,
                          world=WorldConfig(num_shapes=4, shared_attributes=True))
    assert generate(str(tmp_path / "hard"), hard)
    assert world_of(str(tmp_path / "hard")) == hard.world
    with pytest.raises(FileNotFoundError, match="toyworld.json is missing"):
        world_of(str(tmp_path / "nothing"))
