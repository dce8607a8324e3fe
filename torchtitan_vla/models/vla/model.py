"""VLA = Qwen3-VL + flow-matching Action Expert: training loss sums, velocities and ``sample_actions``.

Token layout of one robot sample (joint fusion, pi0)::

    prefix (VLM weights)                          suffix (expert weights)
    [ images | instruction (| state bins) | pad ] [ state | a_1 ... a_H ]
      causal (or bidirectional) among itself        sees the valid prefix; state sees itself,
      never sees the suffix                         actions see state + the whole chunk

Late fusion instead runs the whole VLM, projects its final hidden states into the expert's width and runs
the expert stack over ``[context | time | state | actions]``.

The trainer calls ``forward(batch, options=...) -> LossSums`` (per-sample sums; the loss module takes the
counts from the batch and normalises), serving calls ``sample_actions(batch)``. In between,
``observe(batch)`` gives what a velocity is conditioned on and ``velocity(observation, x_t, t)`` the
flow's velocity at any x_t and t. Construction lives in ``build.py``, the parts protocol in ``parts.py``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ...config.model import ActionExpert as ActionExpertConfig
from ...config.model import Model as ModelConfig
from ...data.batch import Batch
from ...processing.chat import IGNORE_INDEX
from ..action_expert.expert import ActionExpertModel
from ..action_expert.flow import flow_loss_sums, noisy_actions, sample_time, velocity_target
from ..action_expert.layers import ExpertInputs, JointLayer
from ..action_expert.masks import expert_prefix, hide_later_fast, suffix_mask
from ..action_expert.rtc import RTCInputs, guided_velocity, prefix_steps, without_prefix
from ..lora import LoRALinear
from ..qwen3_vl.args import Qwen3VLArgs
from ..qwen3_vl.kv_cache import KVCache
from ..qwen3_vl.masks import build_mask, causal_after_targets
from ..qwen3_vl.model import Qwen3VLModel
from .build import add_lora, vlm_args
from .inputs import Observation, PrefixCache, action_targets, robot_state
from .options import ForwardOptions, LossSums
from .parts import VLAParts


class VLA(VLAParts, nn.Module):
    def __init__(self, vlm_args: Qwen3VLArgs, expert_cfg: ActionExpertConfig, attention_backend: str = "sdpa"):
        super().__init__()
        self.expert_cfg = expert_cfg
        self.vlm = Qwen3VLModel(vlm_args, attention_backend)
        self.expert: ActionExpertModel | None = None
        if expert_cfg.enable:
            self.expert = ActionExpertModel(expert_cfg, vlm_args.text, attention_backend)
            if expert_cfg.fusion == "joint":
                for i in range(vlm_args.text.n_layers):
                    self.vlm.layers[i] = JointLayer(vlm_args.text, i, self.expert.make_layer(i), attention_backend)
        self.lora_components: list[str] = []
        self.skip_idle_expert = True
        """Skip the expert when no sample of the batch has actions (VLM-only steps). Data-parallel
        training whose ranks can disagree must set this False so every rank runs the same modules."""

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, expert_cfg: ActionExpertConfig, tokenizer=None) -> VLA:
        """Build from ``JobConfig.model`` and ``JobConfig.action_expert`` (see ``build.vlm_args``).

        Under a ``torch.device("meta")`` context the model stays on meta (call ``to_empty`` +
        ``init_weights``, then load HF weights through the HF read path when asked: the trainer does);
        otherwise it comes back randomly initialised. It never loads weights itself.
        """
        vla = cls(vlm_args(model_cfg, tokenizer), expert_cfg, model_cfg.attention_backend)
        if model_cfg.lora_rank > 0:
            add_lora(vla, model_cfg.lora_rank, model_cfg.lora_alpha, model_cfg.lora_targets, model_cfg.lora_components)
        if not next(vla.parameters()).is_meta:
            vla.init_weights()
        return vla

    @classmethod
    def build_debug(cls, **expert_overrides) -> VLA:
        """A tiny randomly initialised VLA on CPU: ``VLA.build_debug(fusion="late", action_horizon=4)``."""
        return cls.from_config(ModelConfig(flavor="debug"), ActionExpertConfig(**expert_overrides))

    @torch.no_grad()
    def init_weights(self, buffer_device: torch.device | str | None = None) -> None:
        """Fresh weights everywhere (joint layers initialise their expert half); LoRA adapters start as no-ops."""
        self.vlm.init_weights(buffer_device)
        if self.expert is not None:
            self.expert.init_weights(buffer_device)
        for module in self.modules():
            if isinstance(module, LoRALinear):
                module.init_lora()

    def observe(self, batch: Batch) -> Observation:
        """The VLM's prefix inputs (embeddings with vision features, MRoPE angles, mask) and the robot state."""
        observation = self._prefix(batch)
        observation.state = robot_state(batch, self.expert_cfg) if self.expert is not None else None
        return observation

    def _prefix(self, batch: Batch) -> Observation:
        """``observe`` without the state, which VLM-only batches need not carry."""
        input_ids = batch.input_ids
        valid = batch.attention_mask.bool()
        h, visual_mask, deepstack = self.vlm.embed_multimodal(
            input_ids, batch.pixel_values, batch.image_grid_thw, batch.pixel_values_videos, batch.video_grid_thw
        )
        position_ids = batch.position_ids
        if position_ids is None:
            position_ids, _ = self.vlm.position_ids(input_ids, valid, batch.image_grid_thw, batch.video_grid_thw,
                                                    batch.doc_ids)
        position_ids = position_ids.to(h.device)
        cos, sin = self.vlm.rotary(position_ids)
        causal = True
        if self.expert is not None and self.expert_cfg.prefix_attention == "bidirectional":
            # pi0's prefix-LM: a robot sample's image tokens also see its instruction. Web samples keep the
            # causal mask, since their text is predicted token by token (bidirectional would leak labels).
            causal = torch.zeros_like(valid[:, 0]) if batch.has_actions is None else ~batch.has_actions.bool()
        mask = hide_later_fast(build_mask(valid, batch.doc_ids, causal=causal, device=h.device), batch.fast_mask)
        if not isinstance(causal, bool):  # a row's predicted text (its subtask) stays causal in the prefix-LM
            mask = causal_after_targets(mask, batch.labels != IGNORE_INDEX)
        visible = expert_prefix(valid, batch.fast_mask)
        # Suffix positions continue after the prefix on all three MRoPE rows (text-style positions).
        latest = position_ids.amax(dim=0)
        last = latest.masked_fill(~visible, -1).amax(dim=1)
        text_last = latest.masked_fill(~valid, -1).amax(dim=1)
        return Observation(h, visual_mask, deepstack, cos, sin, mask, visible, last + 1, valid, text_last + 1)

    def _expert_inputs(self, observation: Observation, cond: torch.Tensor | None, insulate: bool) -> ExpertInputs:
        offsets = torch.arange(self.expert.num_suffix_tokens, device=observation.valid.device)
        positions = (observation.next_position[:, None] + offsets).expand(3, -1, -1)
        cos, sin = self.vlm.rotary(positions)
        return ExpertInputs(cos, sin, suffix_mask(observation.valid, self.expert.blocks()), cond, insulate)

    def _run_vlm(self, observation: Observation) -> torch.Tensor:
        o = observation
        return self.vlm.run_layers(o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack)

    def hidden_and_velocity(
        self, observation: Observation, x_t: torch.Tensor, t: torch.Tensor, knowledge_insulation: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over prefix and suffix -> (final-norm prefix hidden states (B, P, D), velocity (B, H, A)).

        ``knowledge_insulation``: the expert reads a detached prefix (no flow gradient into the VLM).
        """
        o = observation
        suffix, cond = self.expert.heads(o.state, x_t, t)
        if self.expert_cfg.fusion == "late":
            hidden = self._run_vlm(o)
            context_kv = self.expert.encode_context(hidden.detach() if knowledge_insulation else hidden, o.valid)
            return hidden, self.expert.velocity(self.expert.run_late(context_kv, o.valid, suffix, cond), cond)
        inputs = self._expert_inputs(o, cond, knowledge_insulation)

        def joint_layer(layer: JointLayer, h: torch.Tensor) -> torch.Tensor:
            nonlocal suffix  # the expert tokens advance beside the prefix, one joint layer at a time
            h, suffix = layer.forward_joint(h, suffix, o.cos, o.sin, o.mask, inputs)
            return h

        hidden = self.vlm.run_layers(o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack, run_layer=joint_layer)
        return hidden, self.expert.velocity(suffix, cond)

    def velocity(self, observation: Observation, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The flow's velocity (B, H, max_action_dim) at x_t (B, H, max_action_dim) and times t (B,), from a
        full pass over prefix and suffix (``encode_prefix`` + ``cached_velocity`` give the same, cheaper)."""
        return self.hidden_and_velocity(observation, x_t, t)[1]

    def encode_prefix(self, observation: Observation) -> PrefixCache:
        """Run the VLM once and keep what every Euler step needs."""
        o = observation
        if self.expert_cfg.fusion == "late":
            return PrefixCache(o.valid, o.state, context_kv=self.expert.encode_context(self._run_vlm(o), o.valid))
        kv_cache = KVCache(len(self.vlm.layers))
        self.vlm.run_layers(o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack, kv_cache)
        return PrefixCache(o.valid, o.state, kv_cache=kv_cache, expert_inputs=self._expert_inputs(o, None, False))

    def cached_velocity(self, cache: PrefixCache, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``velocity`` against a cached prefix: only the expert tokens run."""
        suffix, cond = self.expert.heads(cache.state, x_t, t)
        if self.expert_cfg.fusion == "late":
            suffix = self.expert.run_late(cache.context_kv, cache.valid, suffix, cond)
        else:
            inputs = dataclasses.replace(cache.expert_inputs, cond=cond)
            for layer in self.vlm.layers:
                suffix = layer.forward_cached(suffix, cache.kv_cache, inputs)
        return self.expert.velocity(suffix, cond)

    def forward(
        self,
        batch: Batch,
        noise: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
        options: ForwardOptions = ForwardOptions(),  # noqa: B008 (frozen: a shared default is safe)
    ) -> LossSums:
        """Per-sample text and flow-matching loss sums of one micro-batch (no counts, no normalisation).

        ``noise`` (B, action_horizon, max_action_dim) and flow times ``time`` (B,) are used as given;
        missing ones are drawn (times from ``options.flow_time``).
        """
        observation = self._prefix(batch)
        has_actions = batch.has_actions
        run_expert = self.expert is not None and options.flow and (
            not self.skip_idle_expert or has_actions is None or bool(has_actions.any())
        )
        if not run_expert:
            hidden = self._run_vlm(observation)
            action = torch.zeros(batch.num_samples, device=hidden.device)
            return self._loss_sums(hidden, batch, action)
        targets = action_targets(batch, self.expert_cfg)
        state = robot_state(batch, self.expert_cfg)
        if state is not None:
            # Web samples carry zero states; whatever they hold must not reach the robot samples' loss.
            observation.state = torch.where(targets.has_actions[:, None], state, 0.0)
        noise = self._check_noise(noise, batch) if noise is not None else torch.randn_like(targets.actions)
        if time is None:
            time = sample_time(batch.num_samples, noise.device, **dataclasses.asdict(options.flow_time))
        elif tuple(time.shape) != (batch.num_samples,):
            raise ValueError(f"time has shape {tuple(time.shape)}, expected ({batch.num_samples},)")
        if batch.action_prefix is not None:
            # Training-time RTC: the first d steps enter clean (flow time 0) and carry no loss.
            time = torch.where(prefix_steps(batch.action_prefix, self.expert_cfg.action_horizon), 0.0, time[:, None])
        x_t = noisy_actions(targets.actions, noise, time)
        hidden, velocity = self.hidden_and_velocity(observation, x_t, time, options.knowledge_insulation)
        action = flow_loss_sums(velocity, velocity_target(targets.actions, noise),
                                without_prefix(targets.valid, batch.action_prefix))
        return self._loss_sums(hidden, batch, action)

    def _loss_sums(self, hidden: torch.Tensor, batch: Batch, action: torch.Tensor) -> LossSums:
        """The token loss split into web text, robot samples' subtask text (``Batch.robot_rows``) and FAST
        action tokens (``Batch.fast_mask``)."""
        text, fast = self._token_loss_sums(hidden, batch)
        robot = batch.robot_rows.to(text.device)
        return LossSums(text=torch.where(robot, 0.0, text), action=action, subtask=torch.where(robot, text, 0.0),
                        fast=fast)

    def _token_loss_sums(self, hidden: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) float32 cross-entropy sums over each sample's labelled tokens, (text, FAST actions) split by
        ``batch.fast_mask``; logits only where labelled, in one LM-head call."""
        labels = batch.labels
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"batch.labels has shape {tuple(labels.shape)}, expected {tuple(hidden.shape[:2])}")
        labelled = labels != IGNORE_INDEX
        rows = labelled.nonzero()[:, 0]
        logits = self.vlm.lm_head(hidden[labelled]).float()
        losses = F.cross_entropy(logits, labels[labelled], reduction="none")
        fast = torch.zeros_like(labels, dtype=torch.bool) if batch.fast_mask is None else batch.fast_mask.bool()
        is_fast = fast[labelled].to(losses.dtype)
        # index_add keeps the graph connected (a zero sum) even when nothing is labelled.
        zeros = hidden.new_zeros(labels.shape[0], dtype=torch.float32)
        return zeros.index_add(0, rows, losses * (1 - is_fast)), zeros.index_add(0, rows, losses * is_fast)

    def _check_noise(self, noise: torch.Tensor, batch: Batch) -> torch.Tensor:
        shape = (batch.num_samples, self.expert_cfg.action_horizon, self.expert_cfg.max_action_dim)
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape} (B, action_horizon, max_action_dim)")
        return noise.float()

    @torch.no_grad()
    def sample_actions(
        self,
        batch: Batch,
        num_steps: int | None = None,
        noise: torch.Tensor | None = None,
        use_cache: bool = True,
        rtc: RTCInputs | None = None,
        prefix: PrefixCache | None = None,
    ) -> torch.Tensor:
        """Integrate the flow from noise (t = 1) to actions (t = 0) with Euler steps: (B, H, max_action_dim).

        ``use_cache``: compute the VLM prefix once and run only the expert tokens per step; ``False``
        runs every layer over prefix and suffix at every step (a reference for checking). Padded action
        dims (per ``batch.action_dim_mask`` when given) come back as zeros.

        ``rtc``: real-time chunking against a previous chunk (see ``action_expert/rtc.py``): its first
        ``delay`` steps come back equal to the previous chunk, the overlap after them is guided towards it
        (or, with ``prefix_conditioning``, the prefix is given clean to an expert trained that way).

        ``prefix``: a cache computed already (``generate.greedy_decode``: prompt + generated text), used
        instead of encoding ``batch``'s prompt.
        """
        if self.expert is None:
            raise ValueError("sample_actions needs the Action Expert (action_expert.enable = true)")
        cfg = self.expert_cfg
        num_steps = cfg.num_inference_steps if num_steps is None else num_steps
        if num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        if noise is None:
            shape = (batch.num_samples, cfg.action_horizon, cfg.max_action_dim)
            noise = torch.randn(shape, device=batch.input_ids.device)
        x = self._check_noise(noise, batch)
        dt = -1.0 / num_steps
        cache = prefix
        if cache is None:
            observation = self.observe(batch)  # embeddings, vision features, positions, mask: the same every step
            cache = self.encode_prefix(observation) if use_cache else None

        def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.cached_velocity(cache, x_t, t) if cache is not None else self.velocity(observation, x_t, t)

        if rtc is not None:
            if rtc.prev_actions.shape[0] != batch.num_samples:
                raise ValueError(f"rtc prev_actions holds {rtc.prev_actions.shape[0]} chunks for a batch of "
                                 f"{batch.num_samples}")
            prev, frozen, weights = rtc.padded(cfg.action_horizon, cfg.max_action_dim)
            prev = prev.to(x.device)
        for step in range(num_steps):
            t = torch.full((x.shape[0],), 1.0 + step * dt, device=x.device)
            if rtc is None:
                u = velocity(x, t)
            elif rtc.prefix_conditioning:
                x = torch.where(frozen[:, :, None], prev, x)
                u = velocity(x, torch.where(frozen, 0.0, t[:, None]))
            else:
                u = guided_velocity(velocity, x, t, prev, weights, rtc.max_guidance_weight)
            x = x + dt * u
        if rtc is not None:
            x = torch.where(frozen[:, :, None], prev, x)  # the steps that run while this chunk was computed
        if batch.action_dim_mask is not None:
            dim_mask = F.pad(batch.action_dim_mask.bool(), (0, cfg.max_action_dim - batch.action_dim_mask.shape[1]))
            x = x * dim_mask[:, None, :]
        return x
