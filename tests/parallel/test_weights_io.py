"""The one weight reader (``parallel.weights``) and writer (``parallel.weights_writer``): round trips,
sharding with an index transformers accepts, atomic folders, errors that name keys and files, and an
FSDP2-sharded export equal to the one-process export tensor for tensor."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.distributed_helper import REPO_ROOT, run_torchrun
from tests.parallel.export_checks import SHARD_BYTES, lora_job, lora_vla, write_exports
from torchtitan_vla.models.vla import VLA
from torchtitan_vla.parallel.weights import INDEX_NAME, load_weights_from
from torchtitan_vla.parallel.weights_writer import as_stored, write_weights


def _fresh(seed: int) -> VLA:
    torch.manual_seed(seed)
    return VLA.build_debug(action_horizon=4)


def _stored(folder) -> dict[str, torch.Tensor]:
    index = json.loads((folder / INDEX_NAME).read_text())
    return {k: v for f in sorted(set(index["weight_map"].values())) for k, v in load_file(str(folder / f)).items()}


def test_round_trip_in_several_shards_with_a_correct_index(tmp_path):
    model = _fresh(0)
    state = model.state_dict()
    write_weights(tmp_path / "w", state, as_stored(state), max_shard_bytes=2**17)
    index = json.loads((tmp_path / "w" / INDEX_NAME).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and files == [f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted([INDEX_NAME, *files])
    assert set(index["weight_map"]) == set(state)
    for name, file in index["weight_map"].items():  # each key is in the file the index names
        with safe_open(str(tmp_path / "w" / file), framework="pt") as f:
            assert name in f.keys()
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    for file in files:  # no shard over the limit unless it holds one larger tensor
        shard = load_file(str(tmp_path / "w" / file))
        assert len(shard) == 1 or sum(t.numel() * t.element_size() for t in shard.values()) <= 2**17

    other = _fresh(1)
    assert not torch.equal(other.vlm.norm.weight, model.vlm.norm.weight) or not torch.equal(
        other.vlm.layers[0].attention.wq.weight, model.vlm.layers[0].attention.wq.weight)
    load_weights_from(other, tmp_path / "w")
    for name, tensor in other.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_bfloat16_export_converts_floating_point_tensors(tmp_path):
    state = _fresh(0).state_dict()
    write_weights(tmp_path / "w", state, as_stored(state), dtype=torch.bfloat16)
    stored = _stored(tmp_path / "w")
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    assert torch.equal(stored["vlm.norm.weight"], state["vlm.norm.weight"].bfloat16())


def test_an_interrupted_write_keeps_the_previous_folder(tmp_path):
    state = _fresh(0).state_dict()
    folder = tmp_path / "export"
    write_weights(folder, state, as_stored(state))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(_):
        raise RuntimeError("disk full")

    newer = _fresh(1).state_dict()
    with pytest.raises(RuntimeError, match="disk full"):
        write_weights(folder, newer, as_stored(newer), write_files=crash)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no half-written folder left

    write_weights(folder, newer, as_stored(newer))  # a complete write does replace it
    assert torch.equal(_stored(folder)["vlm.norm.weight"], newer["vlm.norm.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_errors_name_every_bad_key_and_its_file(tmp_path):
    model = _fresh(0)
    state = model.state_dict()
    write_weights(tmp_path / "w", state, as_stored(state), max_shard_bytes=2**17)
    index = json.loads((tmp_path / "w" / INDEX_NAME).read_text())
    file = index["weight_map"]["vlm.norm.weight"]
    shard = load_file(str(tmp_path / "w" / file))
    shard["vlm.norm.weight"] = torch.zeros(3)
    shard["vlm.extra.weight"] = torch.zeros(1)
    save_file(shard, str(tmp_path / "w" / file))
    index["weight_map"]["vlm.extra.weight"] = file
    missing_file = index["weight_map"]["vlm.lm_head.weight"]
    (tmp_path / "w" / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError) as error:
        load_weights_from(_fresh(1), tmp_path / "w")
    message = str(error.value)
    assert "unexpected: ['vlm.extra.weight in" in message and file in message
    assert "vlm.norm.weight: checkpoint (3,) vs model (64,)" in message
    (tmp_path / "w" / missing_file).unlink()
    with pytest.raises(FileNotFoundError, match=missing_file):
        load_weights_from(_fresh(1), tmp_path / "w")


def test_loading_from_a_folder_without_weights_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_weights_from(_fresh(0), tmp_path)


def test_hf_export_merges_lora_and_loads_in_transformers(tmp_path):
    import transformers

    model = lora_vla()
    write_exports(model, lora_job(), tmp_path)
    hf = transformers.Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "hf").float()
    wq = model.vlm.layers[0].attention.wq
    merged = wq.merged_linear().weight
    assert not torch.equal(merged, wq.weight)  # the adapters do change the weight
    torch.testing.assert_close(hf.model.language_model.layers[0].self_attn.q_proj.weight, merged)


@pytest.mark.distributed
def test_two_rank_fsdp_exports_equal_the_one_process_exports(tmp_path):
    run_torchrun(REPO_ROOT / "tests" / "parallel" / "export_checks.py", [str(tmp_path / "sharded")], nproc=2,
                 timeout=300)
    write_exports(lora_vla(), lora_job(), tmp_path / "single")
    for kind in ("hf", "policy"):
        sharded, single = tmp_path / "sharded" / kind, tmp_path / "single" / kind
        assert json.loads((sharded / INDEX_NAME).read_text()) == json.loads((single / INDEX_NAME).read_text())
        a, b = _stored(sharded), _stored(single)
        assert set(a) == set(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name].view(torch.uint8), b[name].view(torch.uint8)), name
    assert (tmp_path / "sharded" / "hf" / "config.json").read_text() == (tmp_path / "single" / "hf" / "config.json").read_text()
    assert SHARD_BYTES < sum(t.numel() * t.element_size() for t in _stored(tmp_path / "single" / "policy").values())
