"""Serving pi0.5's hierarchy: a policy trained with subtasks generates one, samples its actions against the
cache that generation leaves, and answers it under an extra key that openpi's own client passes through."""

import numpy as np
import pytest
import torch

from torchtitan_vla.models.vla.generate import greedy_decode
from torchtitan_vla.serve.key_map import SUBTASK_KEY
from torchtitan_vla.serve.policy import Policy
from torchtitan_vla.serve.server import PolicyServer
from torchtitan_vla.tools.debug_policy import export_debug_policy

CAMERAS = ["cam.top"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    hierarchical = export_debug_policy(tmp_path_factory.mktemp("hier"), CAMERAS, 3, 2, subtasks=True)
    flat = export_debug_policy(tmp_path_factory.mktemp("flat"), CAMERAS, 3, 2)
    return Policy.from_export(hierarchical), Policy.from_export(flat)


def _obs(seed=0, **extra):
    rng = np.random.default_rng(seed)
    return {"observation/image": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            "observation/state": rng.normal(size=3).astype(np.float32), "prompt": "pick up the red cube", **extra}


def test_predicted_subtask_is_generated_first_and_conditions_the_actions(exports):
    policy, _ = exports
    assert policy.predict_subtask  # "auto": the export's robot source has a subtask_key
    torch.manual_seed(0)
    result = policy.infer(_obs())
    torch.manual_seed(0)
    batch = policy.make_batch(_obs())
    noise = torch.randn(1, policy.horizon, policy.cfg.action_expert.max_action_dim)
    tokenizer = policy.tokenizer
    generated = greedy_decode(policy.model, batch, 6, stop_token_ids=(tokenizer.im_end_id,), pad_token_id=tokenizer.pad_id)
    text = tokenizer.decode(generated.ids[0, : generated.lengths[0]].tolist(), skip_special_tokens=True).strip()
    assert result[SUBTASK_KEY] == text
    conditioned = policy.model.sample_actions(batch, policy.num_steps, noise, prefix=generated.cache)[0, :, :2]
    unconditioned = policy.model.sample_actions(batch, policy.num_steps, noise)[0, :, :2]
    expected = policy.action_norm.inverse(conditioned.numpy())
    np.testing.assert_allclose(result["actions"], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(result["actions"], policy.action_norm.inverse(unconditioned.numpy()), atol=1e-4)


def test_given_subtask_is_put_in_the_prompt_and_nothing_is_generated(exports):
    policy, _ = exports
    batch = policy.make_batch(_obs(subtask="reach the cube"))
    tail = policy.tokenizer.encode("reach the cube") + [policy.tokenizer.im_end_id]
    assert batch.input_ids[0, -len(tail):].tolist() == tail
    torch.manual_seed(0)
    result = policy.infer(_obs(subtask="reach the cube"))
    torch.manual_seed(0)
    noise = torch.randn(1, policy.horizon, policy.cfg.action_expert.max_action_dim)
    expected = policy.action_norm.inverse(policy.model.sample_actions(batch, policy.num_steps, noise)[0, :, :2].numpy())
    assert result[SUBTASK_KEY] == "reach the cube"
    np.testing.assert_allclose(result["actions"], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="'subtask' must be a string"):
        policy.infer(_obs(subtask=3))


def test_a_batch_mixing_predicted_and_given_subtasks_equals_one_at_a_time(exports):
    policy, _ = exports
    observations = [_obs(0), _obs(1, subtask="grasp the cube"), _obs(2)]
    torch.manual_seed(0)
    batched = policy.infer_batch(observations)
    torch.manual_seed(0)
    single = [policy.infer(obs) for obs in observations]
    for b, s in zip(batched, single):
        assert b[SUBTASK_KEY] == s[SUBTASK_KEY]
        np.testing.assert_allclose(b["actions"], s["actions"], rtol=1e-4, atol=1e-4)
    assert batched[1][SUBTASK_KEY] == "grasp the cube"


def test_flat_policy_answers_as_before(exports):
    _, flat = exports
    assert not flat.predict_subtask
    result = flat.infer(_obs())
    assert set(result) == {"actions", "policy_timing"}


def test_old_openpi_client_gets_its_actions_and_the_subtask(exports):
    client_module = pytest.importorskip("openpi_client.websocket_client_policy",
                                        reason="openpi-client is not installed (pip install openpi-client)")
    policy, _ = exports
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    server.start()
    try:
        client = client_module.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        result = client.infer(_obs())  # what an openpi client sends: images, state, prompt
        assert result["actions"].shape == (4, 2) and np.isfinite(result["actions"]).all()
        assert isinstance(result[SUBTASK_KEY], str)
    finally:
        server.stop()
