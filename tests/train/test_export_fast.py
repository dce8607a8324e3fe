"""The FAST action tokenizer travels inside every exported policy of a run that uses one, and serving loads it."""

import json
import shutil

import numpy as np
import pytest

from torchtitan_vla.parallel.weights import INDEX_NAME
from torchtitan_vla.processing.fast import FastTokenizer
from torchtitan_vla.serve.policy import Policy, read_export_config
from torchtitan_vla.tools.debug_policy import export_debug_policy

HORIZON, ACTION_DIM = 4, 2


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    chunks = np.cumsum(np.random.default_rng(0).normal(scale=0.1, size=(300, HORIZON, ACTION_DIM)), axis=1)
    path = tmp_path_factory.mktemp("fast") / "elsewhere" / "tok.json"
    FastTokenizer.fit(chunks, vocab_size=256).save(path)
    return path, chunks


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, fitted):
    return export_debug_policy(tmp_path_factory.mktemp("export"), ["cam.top"], state_dim=3, action_dim=ACTION_DIM,
                               horizon=HORIZON, fast_tokenizer_path=str(fitted[0]))


def test_export_carries_the_tokenizer_and_serving_loads_it(export_dir, fitted):
    path, chunks = fitted
    assert (export_dir / "fast_tokenizer.json").read_bytes() == path.read_bytes()
    config = json.loads((export_dir / "config.json").read_text())
    assert config["model"]["fast_tokenizer_path"] == "fast_tokenizer.json"  # relative: the folder can move
    assert "fast_tokenizer.json" in json.loads((export_dir / INDEX_NAME).read_text())["metadata"]["crc32"]
    cfg, _ = read_export_config(export_dir)
    assert cfg.model.fast_tokenizer_path == str(export_dir / "fast_tokenizer.json")
    policy = Policy.from_export(export_dir)
    assert policy.cfg.model.fast_tokenizer_path == str(export_dir / "fast_tokenizer.json")
    # the tokenizer serving decodes with is the fitted one
    assert policy.fast.fast.encode_batch(chunks[:20]) == FastTokenizer.load(path).encode_batch(chunks[:20])


def test_export_without_a_tokenizer_has_none(tmp_path):
    folder = export_debug_policy(tmp_path, ["cam.top"], state_dim=3, action_dim=ACTION_DIM, horizon=HORIZON)
    assert not (folder / "fast_tokenizer.json").exists()
    assert read_export_config(folder)[0].model.fast_tokenizer_path == ""
    assert Policy.from_export(folder).fast is None


def test_missing_tokenizer_file_is_named(export_dir, tmp_path):
    copy = tmp_path / "policy"
    shutil.copytree(export_dir, copy)
    (copy / "fast_tokenizer.json").unlink()
    with pytest.raises((FileNotFoundError, ValueError), match="fast_tokenizer.json"):
        read_export_config(copy)
