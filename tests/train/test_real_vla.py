"""The trainer on the real pieces: the debug VLA, generated cc12m + LeRobot data, the debug
tokenizer; two stages, checkpoints, and an export that the serving Policy loads."""

import subprocess
import sys

import pytest
import torch

from torchtitan_vla.config import load_config, resolve_stages
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer
from torchtitan_vla.train.main import run

TOML = """
[job]
name = "real"
dump_folder = "{out}"
[model]
flavor = "debug"
tokenizer_path = "{data}/tokenizer.json"
[action_expert]
action_horizon = 4
max_action_dim = 8
max_state_dim = 8
[data]
max_seq_len = 192
num_workers = 0
image_size = 64
image_min_pixels = 1024
image_max_pixels = 8192
[[data.sources]]
name = "cc12m"
kind = "cc12m"
path = "{data}/cc12m"
[[data.sources]]
name = "robot"
kind = "lerobot"
path = "{data}/lerobot_v30"
[training]
local_batch_size = 2
ema_decay = 0.5
[checkpoint]
interval = 100
export_hf = true
[metrics]
log_freq = 1
enable_tensorboard = false
[[curriculum.stages]]
name = "vlm"
steps = 2
[curriculum.stages.training]
trainable = ["vision", "decoder"]
action_loss_weight = 0.0
[curriculum.stages.data]
mixture = {{ cc12m = 1.0 }}
[[curriculum.stages]]
name = "robot"
steps = 2
[curriculum.stages.training]
trainable = ["expert"]
[curriculum.stages.data]
mixture = {{ robot = 1.0 }}
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for kind, extra in (("cc12m", ["--items", "8"]), ("lerobot", ["--episodes", "2", "--frames", "12"])):
        out = data / ("lerobot_v30" if kind == "lerobot" else kind)
        subprocess.run([sys.executable, "-m", "torchtitan_vla.tools.synthetic_data", kind, str(out), *extra], check=True)
    build_debug_tokenizer(data / "tokenizer.json")
    return data


def test_two_stages_checkpoint_and_export_a_servable_policy(generated, tmp_path):
    config = tmp_path / "real.toml"
    config.write_text(TOML.format(out=tmp_path / "out", data=generated))
    loaded = load_config(str(config))
    assert run(loaded, resolve_stages(loaded)) == 0
    run_folder = tmp_path / "out" / "real"
    assert sorted(p.name for p in (run_folder / "checkpoints").iterdir()) == ["step-2", "step-4"]

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from torchtitan_vla.parallel.weights import read_state_dict
    from torchtitan_vla.serve.policy import Policy

    dcp_to_torch_save(run_folder / "checkpoints" / "step-2", tmp_path / "s2.pt")
    stage1 = torch.load(tmp_path / "s2.pt", weights_only=False)["model"]
    exported = read_state_dict(run_folder / "export" / "policy")
    assert set(exported) == set(stage1)
    vision = [k for k in stage1 if "vision_encoder" in k]
    assert vision and all(torch.equal(stage1[k], exported[k]) for k in vision), "vision is frozen in stage 2"
    expert = [k for k in stage1 if ".expert." in k or k.startswith("expert.")]
    assert any(not torch.equal(stage1[k], exported[k]) for k in expert), "the expert trained in stage 2"

    # The exported config is what the weights were built with: job-level sections equal the job's.
    import json

    from torchtitan_vla.config import config_to_dict

    exported_config = json.loads((run_folder / "export" / "policy" / "config.json").read_text())
    for section in ("action_expert", "parallelism", "activation_checkpoint", "checkpoint"):
        assert exported_config[section] == config_to_dict(loaded.config)[section], section

    policy = Policy.from_export(run_folder / "export" / "policy")
    assert policy.action_dim == 4 and len(policy.camera_keys) == 2

    from torchtitan_vla.models.qwen3_vl import load_hf_checkpoint

    vlm = load_hf_checkpoint(run_folder / "export" / "hf")
    native = vlm.state_dict()
    assert torch.equal(native["norm.weight"], exported["vlm.norm.weight"])
    assert torch.equal(native["tok_embeddings.weight"], exported["vlm.tok_embeddings.weight"])
