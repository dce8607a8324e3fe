"""HF checkpoint round trips with transformers, and clear errors for bad checkpoints and bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.models.qwen3_vl.oracle import image_run, mm_token_type_ids, pixels, text, tiny_hf_model
from torchtitan_vla.models.qwen3_vl import load_hf_checkpoint, save_hf_checkpoint

TOL = 1e-4
GRID = (1, 4, 6)


def _inputs():
    pv, thw = pixels([GRID])
    ids = torch.tensor([text(3) + image_run(GRID) + text(5, 1)])
    return ids, {"pixel_values": pv, "image_grid_thw": thw}


def _hf_logits(hf, ids, vision):
    with torch.no_grad():
        return hf(input_ids=ids, mm_token_type_ids=mm_token_type_ids(ids), **vision).logits


def _ours_logits(model, ids, vision):
    with torch.no_grad():
        return model(ids, **vision)


@pytest.mark.parametrize("moe,tie", [(False, False), (False, True), (True, False)])
def test_transformers_checkpoint_loads(tmp_path, moe, tie):
    hf = tiny_hf_model(moe=moe, tie=tie)
    hf.save_pretrained(tmp_path)
    model = load_hf_checkpoint(tmp_path)
    assert not model.training
    ids, vision = _inputs()
    assert (_ours_logits(model, ids, vision) - _hf_logits(hf, ids, vision)).abs().max() < TOL


@pytest.mark.parametrize("moe", [False, True])
def test_export_loads_in_transformers(tmp_path, moe):
    import transformers

    hf = tiny_hf_model(moe=moe)
    hf.save_pretrained(tmp_path / "src")
    model = load_hf_checkpoint(tmp_path / "src")
    # A tiny shard limit forces the sharded layout with an index.
    save_hf_checkpoint(model, tmp_path / "out", max_shard_bytes=2**20)
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    cls = transformers.Qwen3VLMoeForConditionalGeneration if moe else transformers.Qwen3VLForConditionalGeneration
    reloaded = cls.from_pretrained(tmp_path / "out").float().eval()
    ids, vision = _inputs()
    ref = _ours_logits(model, ids, vision)
    assert (_hf_logits(reloaded, ids, vision) - ref).abs().max() < TOL
    # ... and the export (hub expert layout) loads back here, weight for weight.
    again = load_hf_checkpoint(tmp_path / "out").state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_hf")
    tiny_hf_model().save_pretrained(path)
    return path


def _edit_weights(src, dst, edit):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))


def test_missing_directory_and_files(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "nowhere")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((saved / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_hf_checkpoint(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        load_hf_checkpoint(tmp_path / "noweights")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path)


def test_unknown_missing_and_misshaped_keys_are_listed(tmp_path, saved):
    key = "model.language_model.layers.1.self_attn.q_proj.weight"

    def unknown(state):
        state["model.language_model.layers.0.self_attn.rotary.weight"] = torch.zeros(1)

    def missing(state):
        del state[key]

    def misshaped(state):
        state[key] = torch.zeros(3, 3)

    _edit_weights(saved, tmp_path / "a", unknown)
    with pytest.raises(ValueError, match="unknown keys.*layers.0.self_attn.rotary.weight"):
        load_hf_checkpoint(tmp_path / "a")
    _edit_weights(saved, tmp_path / "b", missing)
    with pytest.raises(ValueError, match=r"missing from the checkpoint: \['layers.1.attention.wq.weight'\]"):
        load_hf_checkpoint(tmp_path / "b")
    _edit_weights(saved, tmp_path / "c", misshaped)
    with pytest.raises(ValueError, match=r"layers.1.attention.wq.weight: checkpoint \(3, 3\) vs model \(64, 64\)"):
        load_hf_checkpoint(tmp_path / "c")


def test_placeholder_count_must_match_the_image_features(saved):
    model = load_hf_checkpoint(saved)
    pv, thw = pixels([GRID])
    ids = torch.tensor([text(3) + image_run((1, 4, 4)) + text(2)])  # 4 placeholders, the image gives 6
    with pytest.raises(ValueError, match="4 image placeholder tokens .* 6 features"):
        model(ids, pixel_values=pv, image_grid_thw=thw)
    with pytest.raises(ValueError, match="placeholder tokens but no image pixels"):
        model(ids)
    with pytest.raises(ValueError, match=r"pixel values have shape \(24, 1536\)"):
        model(torch.tensor([image_run((1, 4, 8))]), pixel_values=pv, image_grid_thw=torch.tensor([[1, 4, 8]]))
