"""Policy: normalize the observation in, sample, unnormalize the chunk out; broken exports are named."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from torchtitan_vla.parallel.weights import INDEX_NAME
from torchtitan_vla.parallel.weights_writer import record_checksums
from torchtitan_vla.serve.key_map import ObservationKeyMap
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.tools.debug_policy import export_debug_policy


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return export_debug_policy(tmp_path_factory.mktemp("export"), ["cam.top"], state_dim=3, action_dim=2)


def test_infer_normalizes_state_and_unnormalizes_actions(export_dir):
    policy = Policy.from_export(export_dir)
    rng = np.random.default_rng(0)
    obs = {"observation/image": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
           "observation/state": np.array([1.0, -2.0, 0.5], np.float32), "prompt": "pick up the red cube"}
    stats = json.loads((export_dir / "config.json").read_text())["norm_stats"]
    batch = policy.make_batch(obs)
    expected_state = (obs["observation/state"] - np.array(stats["state"]["mean"])) / (np.array(stats["state"]["std"]) + 1e-6)
    np.testing.assert_allclose(batch.state[0, :3].numpy(), expected_state, rtol=1e-5)
    assert not batch.state[0, 3:].any()  # zero-padded to max_state_dim
    assert batch.actions is None and batch.action_is_pad is None  # sampling makes the chunk
    assert batch.action_dim_mask[0].tolist() == [True, True] + [False] * (batch.action_dim_mask.shape[1] - 2)

    torch.manual_seed(0)
    actions = policy.infer(obs)["actions"]
    torch.manual_seed(0)
    raw = policy.model.sample_actions(batch, num_steps=policy.num_steps)[0, :, :2].detach().numpy()
    expected = raw * (np.array(stats["action"]["std"]) + 1e-6) + np.array(stats["action"]["mean"])
    assert actions.shape == (4, 2) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, expected, rtol=1e-4, atol=1e-4)


def test_export_is_sharded_safetensors_that_the_policy_reads_weight_for_weight(export_dir):
    index = json.loads((export_dir / INDEX_NAME).read_text())
    stored = {}
    for file in sorted(set(index["weight_map"].values())):
        stored.update(load_file(str(export_dir / file)))
    policy = Policy.from_export(export_dir)
    state = policy.model.state_dict()
    assert set(stored) == set(state) == set(index["weight_map"])
    for name, tensor in state.items():
        assert torch.equal(tensor, stored[name]), name


def test_broken_exports_are_named(export_dir, tmp_path):
    broken = tmp_path / "no_index"
    shutil.copytree(export_dir, broken)
    (broken / INDEX_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=INDEX_NAME):
        Policy.from_export(broken)

    shard = json.loads((export_dir / INDEX_NAME).read_text())["weight_map"]["vlm.norm.weight"]
    no_shard = tmp_path / "no_shard"
    shutil.copytree(export_dir, no_shard)
    (no_shard / shard).unlink()
    with pytest.raises(FileNotFoundError, match=shard):
        Policy.from_export(no_shard)

    wrong = tmp_path / "wrong_shape"
    shutil.copytree(export_dir, wrong)
    tensors = load_file(str(wrong / shard))
    tensors["vlm.norm.weight"] = torch.zeros(3)
    save_file(tensors, str(wrong / shard))
    record_checksums(wrong, json.loads((wrong / INDEX_NAME).read_text()))  # edited on purpose, not corrupt
    with pytest.raises(ValueError, match=rf"vlm.norm.weight: checkpoint \(3,\) vs model \(64,\) \(vlm.norm.weight in {shard}\)"):
        Policy.from_export(wrong)

    no_stats = tmp_path / "no_stats"
    shutil.copytree(export_dir, no_stats)
    config = json.loads((no_stats / "config.json").read_text())
    del config["norm_stats"]
    (no_stats / "config.json").write_text(json.dumps(config))
    record_checksums(no_stats, json.loads((no_stats / INDEX_NAME).read_text()))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['norm_stats'\]"):
        Policy.from_export(no_stats)


def test_key_map_must_feed_every_camera(export_dir):
    with pytest.raises(ValueError, match=r"cameras without a client key \['cam.top'\]"):
        Policy.from_export(export_dir, key_map=ObservationKeyMap(images={"observation/image": "cam.side"}))


def test_export_carries_its_architecture_and_loads_from_anywhere(export_dir, tmp_path):
    """An export names no folder outside itself: moved elsewhere, it still builds and loads."""
    config = json.loads((export_dir / "config.json").read_text())
    assert config["model"]["hf_assets_path"] == "vlm" and not config["model"]["load_hf_weights"]
    assert json.loads((export_dir / "vlm" / "config.json").read_text())["model_type"] == "qwen3_vl"
    moved = tmp_path / "elsewhere" / "policy"
    shutil.copytree(export_dir, moved)
    original, relocated = Policy.from_export(export_dir), Policy.from_export(moved)
    for (name, a), (_, b) in zip(original.model.state_dict().items(), relocated.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_delta_actions_come_back_absolute(export_dir):
    from torchtitan_vla.serve.policy import read_export_config

    plain = Policy.from_export(export_dir)
    _, extras = read_export_config(export_dir)
    extras["action_transform"] = {"delta_action_dims": [0, 1], "delta_state_dims": [2, 0]}
    delta = Policy(plain.model, plain.tokenizer, plain.cfg, extras)
    obs = {"observation/image": np.zeros((32, 32, 3), np.uint8),
           "observation/state": np.array([1.0, -2.0, 0.5], np.float32), "prompt": "pick up the red cube"}
    torch.manual_seed(0)
    relative = plain.infer(obs)["actions"]
    torch.manual_seed(0)
    absolute = delta.infer(obs)["actions"]
    np.testing.assert_allclose(absolute, relative + np.array([0.5, 1.0], np.float32), rtol=1e-5, atol=1e-5)
