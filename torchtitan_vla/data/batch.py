"""``Batch``: what the collator hands the model, one typed field per tensor.

Every source (web text, interleaved documents, robot episodes) produces the same fields, so a mixed batch
is one object: robot fields hold zeros for web samples and ``has_actions`` says which rows are robot
samples. Shapes use B = samples, S = tokens per sample (padded), H = ``action_expert.action_horizon``,
A = ``action_expert.max_action_dim``, D_s = ``action_expert.max_state_dim``, N = vision patches of the
whole batch (before the 2x2 merge), P = the processor's patch width (3 x 2 x 16 x 16 = 1536).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    input_ids: torch.Tensor
    """(B, S) long token ids; several packed documents back to back in one row when packing is on."""

    labels: torch.Tensor
    """(B, S) long, already shifted: the token to predict at each position; ``IGNORE_INDEX`` (-100) where
    there is no text loss (prompts, image tokens, robot samples' prefixes, padding)."""

    attention_mask: torch.Tensor
    """(B, S) bool: True at real tokens, False at padding."""

    position_ids: torch.Tensor | None = None
    """(3, B, S) long MRoPE positions (temporal, height, width), restarting at every packed document.
    None: the model computes them with ``get_rope_index`` (on the CPU)."""

    doc_ids: torch.Tensor | None = None
    """(B, S) long packed-document index of each token, -1 at padding; attention never crosses documents.
    None: one document per row."""

    pixel_values: torch.Tensor | None = None
    """(N, P) float32 image patches of every image of the batch, in token order; None without images."""

    image_grid_thw: torch.Tensor | None = None
    """(n_images, 3) long patch grid (t, h, w) of each image, in token order; None without images."""

    pixel_values_videos: torch.Tensor | None = None
    """(N_video, P) float32 video patches (frame pairs), in token order; None without videos."""

    video_grid_thw: torch.Tensor | None = None
    """(n_videos, 3) long patch grid of each video; None without videos."""

    state: torch.Tensor | None = None
    """(B, D_s) float32 normalised, zero-padded proprioceptive state; zeros for web samples. None: no robot
    data at all (a VLM-only model or batch)."""

    actions: torch.Tensor | None = None
    """(B, H, A) float32 normalised, zero-padded action chunk; zeros for web samples. None at inference."""

    action_is_pad: torch.Tensor | None = None
    """(B, H) bool: True for chunk steps past the episode's end (no loss there)."""

    action_dim_mask: torch.Tensor | None = None
    """(B, A) bool: True for the robot's real action dimensions (padded dimensions get no loss and are
    returned as zeros by sampling)."""

    has_actions: torch.Tensor | None = None
    """(B,) bool: True for robot samples. None: every row is a robot sample when ``actions`` is given."""

    fast_mask: torch.Tensor | None = None
    """(B, S) bool: True at the FAST action segment of robot samples (``"Action: "``, the chunk's FAST
    tokens, EOS). The labels inside it are the discrete action loss's targets (the rest are the text
    loss's); the Action Expert never attends to these tokens. None: no FAST tokens."""

    action_prefix: torch.Tensor | None = None
    """(B,) long: training-time real-time chunking's prefix length per sample (drawn per step by
    ``train/forward_backward.py``): the first steps of the chunk enter the expert clean and are not loss
    targets. None: no prefix."""

    source_id: torch.Tensor | None = None
    """(B,) long index of each sample's data source in the loader's ``source_names`` (per-source metrics)."""

    skipped: torch.Tensor | None = None
    """(n_sources,) long examples each source skipped (corrupt media, unavailable images) while this batch
    was produced."""

    @property
    def num_samples(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def robot_rows(self) -> torch.Tensor:
        """(B,) bool: robot samples (``has_actions``; without it, every row when ``actions`` is given). Their
        text targets are subtask annotations, counted apart from the web text (``train/loss.py``)."""
        if self.has_actions is not None:
            return self.has_actions.bool()
        return torch.full((self.num_samples,), self.actions is not None, device=self.input_ids.device)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by the data loader when ``pin_memory`` is on."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn) -> Batch:
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values[f.name] = fn(value) if isinstance(value, torch.Tensor) else value
        return Batch(**values)
