"""The optional real-time chunking keys of a request (docs/realtime.md).

A client that executes chunks asynchronously (``serve.runner``) sends, beside the observation:

* ``prev_actions``: float (L, action_dim), the previous chunk's actions in the robot's (unnormalised)
  action space, aligned to the chunk being requested: row i is what the old chunk planned for the time
  step the new chunk's row i will run at; the guided overlap ends after row L - 1 (L <= action_horizon);
* ``inference_delay``: int d, the control steps that will run before the new chunk arrives; the new
  chunk's first d rows come back equal to ``prev_actions``.

A request without ``prev_actions`` is answered exactly as before (openpi clients never send it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the evaluators read the key names without importing torch
    import torch

    from torchtitan_vla.config import JobConfig
    from torchtitan_vla.data.normalize import Normalizer
    from torchtitan_vla.models.action_expert.rtc import RTCInputs

PREV_ACTIONS_KEY = "prev_actions"
DELAY_KEY = "inference_delay"


def rtc_inputs(obs: dict[str, Any], cfg: JobConfig, action_norm: Normalizer, action_dim: int,
               device: torch.device) -> RTCInputs | None:
    """The request's RTC inputs for a batch of one, in model action space; None without ``prev_actions``.

    A policy trained with training-time RTC (``training.rtc_max_delay`` > 0) conditions on the prefix;
    others are guided (``action_expert.rtc_max_guidance_weight``, ``rtc_schedule``).
    """
    if obs.get(PREV_ACTIONS_KEY) is None:
        return None
    import torch

    from torchtitan_vla.models.action_expert.rtc import RTCInputs

    horizon = cfg.action_expert.action_horizon
    prev = np.asarray(obs[PREV_ACTIONS_KEY], dtype=np.float32)
    if prev.ndim != 2 or prev.shape[0] > horizon or prev.shape[1] != action_dim:
        raise ValueError(f"'{PREV_ACTIONS_KEY}' must have shape (<= {horizon}, {action_dim}), got {prev.shape}")
    if not np.isfinite(prev).all():
        raise ValueError(f"'{PREV_ACTIONS_KEY}' contains NaN or inf")
    delay = obs.get(DELAY_KEY, 0)
    if isinstance(delay, (bool, float)) or not 0 <= int(delay) <= prev.shape[0]:
        raise ValueError(f"'{DELAY_KEY}' must be an int in [0, {prev.shape[0]}] (the rows of "
                         f"'{PREV_ACTIONS_KEY}'), got {delay!r}")
    normalised = torch.from_numpy(np.asarray(action_norm(prev), dtype=np.float32))[None].to(device)
    return RTCInputs.build(normalised, int(delay), execution_horizon=0,
                           max_guidance_weight=cfg.action_expert.rtc_max_guidance_weight,
                           schedule=cfg.action_expert.rtc_schedule,
                           prefix_conditioning=cfg.training.rtc_max_delay > 0)


def rtc_settings(cfg: JobConfig) -> dict[str, Any]:
    """How the policy answers the optional keys; the server sends it in its metadata."""
    return {"request_keys": [PREV_ACTIONS_KEY, DELAY_KEY],
            "mode": "prefix" if cfg.training.rtc_max_delay > 0 else "guided",
            "max_guidance_weight": cfg.action_expert.rtc_max_guidance_weight,
            "schedule": cfg.action_expert.rtc_schedule}
