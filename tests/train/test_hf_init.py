"""Initialising the VLM from a Hugging Face Qwen3-VL folder in the trainer (``model.load_hf_weights``
and ``checkpoint.initial_load_format = "hf"``): architecture from config.json, tokenizer from
tokenizer.json, weights loaded into the parallelized model; one and two ranks; clear path errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.distributed_helper import REPO_ROOT, run_torchrun
from tests.models.qwen3_vl.oracle import pixels, tiny_hf_config
from torchtitan_vla.config import load_config, resolve_stages
from torchtitan_vla.models.qwen3_vl import load_hf_checkpoint
from torchtitan_vla.processing.tokenizer import Tokenizer, build_debug_tokenizer
from torchtitan_vla.train.spec import default_spec
from torchtitan_vla.train.trainer import Trainer

GRID = (1, 4, 4)

TOML = """
[job]
name = "hf"
dump_folder = "{out}"
[model]
hf_assets_path = "{hf}"
load_hf_weights = true
[action_expert]
action_horizon = 4
max_action_dim = 4
max_state_dim = 4
[data]
max_seq_len = 128
num_workers = 0
image_size = 64
image_min_pixels = 1024
image_max_pixels = 4096
[[data.sources]]
name = "cc12m"
kind = "cc12m"
path = "{cc12m}"
[training]
local_batch_size = {batch}
[optimizer]
lr = 0.0
[checkpoint]
enable = false
export_policy = false
export_hf = true
[metrics]
log_freq = 1
enable_tensorboard = false
[[curriculum.stages]]
name = "vlm"
steps = 1
"""


def _train_main():
    """``train.py``'s ``main(argv)``, run in this process."""
    spec = importlib.util.spec_from_file_location("train_entry", REPO_ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A transformers-written tiny Qwen3-VL whose token ids are the debug tokenizer's, plus cc12m data."""
    import transformers

    root = tmp_path_factory.mktemp("hf_init")
    hf_dir = root / "qwen3vl"
    hf_dir.mkdir()
    build_debug_tokenizer(hf_dir / "tokenizer.json")
    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    cfg = tiny_hf_config(n_layers=2)
    cfg["text_config"]["vocab_size"] = 1024
    cfg.update(image_token_id=tok.image_pad_id, video_token_id=tok.video_pad_id,
               vision_start_token_id=tok.vision_start_id, vision_end_token_id=tok.vision_end_id)
    torch.manual_seed(0)
    hf = transformers.Qwen3VLForConditionalGeneration(
        transformers.Qwen3VLConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
    ).float().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(hf_dir)
    cc12m = root / "cc12m"
    subprocess.run([sys.executable, "-m", "torchtitan_vla.tools.synthetic_data", "cc12m", str(cc12m), "--items", "4"],
                   check=True)
    return {"hf": hf_dir, "model": hf, "tokenizer": tok, "cc12m": cc12m}


def _config(assets, tmp_path, batch: int = 2) -> Path:
    path = tmp_path / "hf.toml"
    path.write_text(TOML.format(out=tmp_path / "out", hf=assets["hf"], cc12m=assets["cc12m"], batch=batch))
    return path


def test_trainer_model_gives_transformers_logits(assets, tmp_path):
    loaded = load_config(str(_config(assets, tmp_path)))
    trainer = Trainer(loaded, resolve_stages(loaded), default_spec())
    try:
        trainer._initial_load()
        model = trainer.model
        tok = assets["tokenizer"]
        assert model.vlm.args.text.n_layers == 2 and model.vlm.args.text.vocab_size == 1024  # config.json, not the flavor
        ids = torch.tensor([tok.encode("a photo of <|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|> a cat")])
        pv, thw = pixels([GRID])
        with torch.no_grad():
            ours = model.vlm(ids, pixel_values=pv, image_grid_thw=thw)
            mm_types = (ids == tok.image_pad_id).long()
            ref = assets["model"](input_ids=ids, mm_token_type_ids=mm_types, pixel_values=pv, image_grid_thw=thw).logits
        assert (ours - ref).abs().max() < 1e-4
        assert all(torch.isfinite(p).all() for p in model.expert.parameters())
    finally:
        trainer.close()


def _assert_export_is_the_checkpoint(run_folder: Path, hf_dir: Path) -> None:
    """With lr = 0 the exported VLM must be exactly the loaded HF weights."""
    source = load_hf_checkpoint(hf_dir).state_dict()
    exported = load_hf_checkpoint(run_folder / "export" / "hf").state_dict()
    assert set(source) == set(exported)
    assert all(torch.equal(source[k], exported[k]) for k in source)


@pytest.mark.parametrize("how", ["model.load_hf_weights", "checkpoint.initial_load_format"])
def test_train_py_initialises_from_hf(assets, tmp_path, how):
    argv = ["--config", str(_config(assets, tmp_path))]
    if how == "checkpoint.initial_load_format":
        argv += ["--model.load_hf_weights=false", f"--checkpoint.initial_load_path={assets['hf']}",
                 "--checkpoint.initial_load_format=hf"]
    assert _train_main()(argv) == 0
    _assert_export_is_the_checkpoint(tmp_path / "out" / "hf", assets["hf"])


@pytest.mark.parametrize("broken", ["folder", "config", "weights", "both"])
def test_missing_hf_assets_exit_2_naming_the_path(assets, tmp_path, capsys, broken):
    hf_dir = tmp_path / "broken_hf"
    argv = ["--config", str(_config(assets, tmp_path))]
    if broken != "folder":
        hf_dir.mkdir()
        (hf_dir / "tokenizer.json").write_text((assets["hf"] / "tokenizer.json").read_text())
        if broken != "config":
            (hf_dir / "config.json").write_text((assets["hf"] / "config.json").read_text())
    if broken == "both":
        hf_dir = assets["hf"]
        argv.append(f"--checkpoint.initial_load_path={hf_dir}")
    argv.append(f"--model.hf_assets_path={hf_dir}")
    assert _train_main()(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    expected = "initial_load_path" if broken == "both" else str(hf_dir)
    assert expected in errors[0]


@pytest.mark.distributed
@pytest.mark.parametrize("tp", [1, 2])
def test_two_ranks_load_sharded_hf_weights(assets, tmp_path, tp):
    """FSDP (dim-0 rows) or TP (heads, rows and columns; the fused ViT qkv split by heads): with lr = 0
    the exported VLM is exactly the transformers-written checkpoint."""
    config = _config(assets, tmp_path, batch=1)
    run_torchrun(REPO_ROOT / "train.py", ["--config", str(config), f"--parallelism.tensor_parallel_degree={tp}"],
                 nproc=2, timeout=240)
    _assert_export_is_the_checkpoint(tmp_path / "out" / "hf", assets["hf"])
