"""A policy with FAST action tokens: pi0-FAST decoding (always a chunk, repairs counted) and flow serving
that keeps FAST tokens out of the prompt."""

import json
from pathlib import Path

import numpy as np
import pytest

from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.tools.debug_policy import export_debug_policy

OBS = {"observation/state": np.array([1.0, -2.0, 0.5], np.float32), "prompt": "pick up the red cube"}


def _obs(seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return {**OBS, "observation/image": image}


@pytest.fixture(scope="module", params=["fast", "flow"])
def policy(request, tmp_path_factory):
    folder = export_debug_policy(tmp_path_factory.mktemp("export"), ["cam.top"], state_dim=3, action_dim=2,
                                 action_decoding=request.param)
    return Policy.from_export(folder)


def test_fast_tokenizer_travels_with_the_export(policy):
    folder = Path(policy.cfg.model.fast_tokenizer_path).parent  # resolved against the export folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["fast_tokenizer_path"] == "fast_tokenizer.json"
    assert (folder / "fast_tokenizer.json").is_file()
    assert policy.fast is not None and policy.metadata["action_decoding"] == policy.decoding


def test_both_modes_return_chunks_of_the_right_shape(policy):
    responses = policy.infer_batch([_obs(0), _obs(1)])
    for response in responses:
        assert response["actions"].shape == (4, 2) and np.isfinite(response["actions"]).all()
    sample = policy.sample(_obs(0))
    if policy.decoding == "fast":
        # The prompt ends with "Action: ", flagged as the FAST segment; an untrained VLM's streams are
        # repaired and counted, never an exception.
        assert sample.fast_mask is not None and sample.fast_mask[-1]
        assert policy.tokenizer.decode(sample.input_ids[-5:].tolist()).endswith("Action: ")
        assert policy.fast_decodes == 2 and responses[-1]["fast_decode"]["fallbacks"] == policy.fast_fallbacks
    else:
        assert sample.fast_mask is None  # flow inference: no FAST tokens, the latency of today
        assert "fast_decode" not in responses[0]
