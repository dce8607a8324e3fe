"""The expert's input and output projections: state token, action tokens, time conditioning, velocity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .flow import time_embedding


class ActionHeads(nn.Module):
    """Turns (state, x_t, t) into expert tokens and expert outputs into velocities.

    Time enters in one of two ways (``time_conditioning``):
      * ``mlp`` (pi0): each action token is ``MLP([action_in_proj(x_t) | emb(t)])``;
      * ``adarms`` (pi0.5): action tokens are ``action_in_proj(x_t)`` and ``silu(time MLP(emb(t)))``
        modulates the expert's norms.
    ``time_token`` (late fusion) additionally produces one token from ``time MLP(emb(t))``.
    """

    def __init__(
        self,
        width: int,
        max_action_dim: int,
        max_state_dim: int,
        state_token: bool,
        time_conditioning: str,
        time_token: bool,
        min_period: float,
        max_period: float,
    ):
        super().__init__()
        self.width = width
        self.time_conditioning = time_conditioning
        self.min_period = min_period
        self.max_period = max_period
        self.action_in_proj = nn.Linear(max_action_dim, width)
        self.action_out_proj = nn.Linear(width, max_action_dim)
        self.state_proj = nn.Linear(max_state_dim, width) if state_token else None
        if time_conditioning == "mlp":
            self.action_time_mlp_in = nn.Linear(2 * width, width)
            self.action_time_mlp_out = nn.Linear(width, width)
        if time_conditioning == "adarms" or time_token:
            self.time_mlp_in = nn.Linear(width, width)
            self.time_mlp_out = nn.Linear(width, width)
        self.time_token = time_token

    @property
    def num_condition_tokens(self) -> int:
        """Tokens placed before the actions: [time] (late fusion) and [state] (continuous state)."""
        return int(self.time_token) + int(self.state_proj is not None)

    def forward(
        self, state: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (suffix tokens (B, num_condition_tokens + H, W), adaRMS condition (B, W), (B, S, W) or None).

        ``t`` is one flow time per sample (B,) or one per action step (B, H) (training-time real-time
        chunking: a clean prefix at t = 0). With per-step times the time and state tokens take the
        sample's largest time, and the adaRMS condition becomes per token.
        """
        dtype = self.action_in_proj.weight.dtype
        per_step = t.dim() == 2
        emb = time_embedding(t.amax(dim=1) if per_step else t, self.width, self.min_period, self.max_period).to(dtype)
        if per_step:
            step_emb = time_embedding(t.flatten(), self.width, self.min_period, self.max_period).to(dtype)
            step_emb = rearrange(step_emb, "(b h) w -> b h w", b=t.shape[0])
        else:
            step_emb = repeat(emb, "b w -> b h w", h=x_t.shape[1])
        actions = self.action_in_proj(x_t.to(dtype))
        tokens = []
        cond = None
        if self.time_token or self.time_conditioning == "adarms":
            time_features = self.time_mlp_out(F.silu(self.time_mlp_in(emb)))
            if self.time_token:
                tokens.append(rearrange(time_features, "b w -> b 1 w"))
            if self.time_conditioning == "adarms":
                cond = F.silu(time_features)
                if per_step:
                    step_cond = F.silu(self.time_mlp_out(F.silu(self.time_mlp_in(step_emb))))
                    head = repeat(cond, "b w -> b n w", n=self.num_condition_tokens)
                    cond = torch.cat([head, step_cond], dim=1)
        if self.state_proj is not None:
            tokens.append(rearrange(self.state_proj(state.to(dtype)), "b w -> b 1 w"))
        if self.time_conditioning == "mlp":
            mixed = torch.cat([actions, step_emb], dim=-1)
            actions = self.action_time_mlp_out(F.silu(self.action_time_mlp_in(mixed)))
        tokens.append(actions)
        return torch.cat(tokens, dim=1), cond

    def velocity(self, action_hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden states of the H action tokens -> velocities (B, H, max_action_dim) fp32."""
        return self.action_out_proj(action_hidden).float()

    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
