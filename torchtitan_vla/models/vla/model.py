"""VLA = Qwen3-VL + flow-matching Action Expert: training losses and ``sample_actions``.

Token layout of one robot sample (joint fusion, pi0)::

    prefix (VLM weights)                          suffix (expert weights)
    [ images | instruction (| state bins) | pad ] [ state | a_1 ... a_H ]
      causal (or bidirectional) among itself        sees the valid prefix; state sees itself,
      never sees the suffix                         actions see state + the whole chunk

Late fusion instead runs the whole VLM, projects its final hidden states into the expert's width and runs
the expert stack over ``[context | time | state | actions]``.

The trainer talks to this module through ``forward(batch) -> sums and counts`` (normalised by global
counts outside) and the serving side through ``sample_actions(batch)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...config.model import ActionExpert as ActionExpertConfig
from ...config.model import Model as ModelConfig
from ..action_expert.expert import ActionExpertModel
from ..action_expert.flow import flow_loss_sums, noisy_actions, sample_time, valid_action_mask, velocity_target
from ..action_expert.layers import ExpertInputs, JointLayer
from ..action_expert.masks import suffix_mask
from ..lora import LoRALinear, apply_lora, is_lora_parameter
from ...processing.chat import IGNORE_INDEX
from ..qwen3_vl.args import FLAVORS, Qwen3VLArgs
from ..qwen3_vl.hf_checkpoint import read_hf_config, read_hf_state_dict
from ..qwen3_vl.kv_cache import KVCache
from ..qwen3_vl.masks import build_mask
from ..qwen3_vl.model import Qwen3VLModel
from ..qwen3_vl.state_dict_adapter import Qwen3VLStateDictAdapter

COMPONENTS = ("vision", "decoder", "expert")


def not_in_hf_checkpoint(vlm_key: str) -> bool:
    """Keys of ``VLA.vlm`` that a Hugging Face Qwen3-VL checkpoint cannot hold: the expert half of the
    joint layers and LoRA adapters (their merged weights are exported instead)."""
    return ".expert." in f".{vlm_key}" or is_lora_parameter(vlm_key)


@dataclass
class Prefix:
    """The VLM's inputs for one batch, computed once and shared by all layers."""

    h: torch.Tensor
    """(B, P, D) token embeddings with vision features in the placeholder slots."""
    visual_mask: torch.Tensor
    """(B, P) bool: visual positions (DeepStack targets)."""
    deepstack: list[torch.Tensor]
    """DeepStack features per level, rows in order of the visual positions."""
    cos: torch.Tensor
    """(B, P, head_dim) MRoPE cos."""
    sin: torch.Tensor
    """(B, P, head_dim) MRoPE sin."""
    mask: torch.Tensor
    """(B, 1, P, P) prefix attention mask."""
    valid: torch.Tensor
    """(B, P) bool: False at padding."""
    next_position: torch.Tensor
    """(B,) long: one past the largest MRoPE position of the valid prefix (where the suffix starts)."""


@dataclass
class PrefixCache:
    """What the Euler steps reuse: the prefix keys/values (joint) or the context keys/values (late)."""

    valid: torch.Tensor
    """(B, P) bool: valid prefix tokens."""
    next_position: torch.Tensor
    """(B,) long: first MRoPE position of the suffix (joint fusion)."""
    kv_cache: KVCache | None = None
    """Joint fusion: every decoder layer's prefix keys/values."""
    context_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    """Late fusion: every expert layer's context keys/values."""
    expert_inputs: ExpertInputs | None = None
    """Joint fusion: suffix rotary angles and mask (independent of t; the condition is set per step)."""


class _ComponentView(nn.Module):
    """Groups modules that the VLA owns elsewhere (a view for freezing and parameter groups; it is not
    registered in the VLA, so it adds no state-dict entries)."""

    def __init__(self, **parts: nn.Module | list[nn.Module]):
        super().__init__()
        for name, part in parts.items():
            setattr(self, name, nn.ModuleList(part) if isinstance(part, list) else part)


class VLA(nn.Module):
    def __init__(
        self,
        vlm_args: Qwen3VLArgs,
        expert_cfg: ActionExpertConfig,
        attention_backend: str = "sdpa",
    ):
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

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls, model_cfg: ModelConfig, expert_cfg: ActionExpertConfig, tokenizer=None
    ) -> VLA:
        """Build from ``JobConfig.model`` and ``JobConfig.action_expert``.

        The architecture comes from ``<hf_assets_path>/config.json`` when there is one, else from the
        flavor; a ``tokenizer`` replaces the vision token ids (the debug tokenizer has its own). Under a
        ``torch.device("meta")`` context the model stays on meta (call ``to_empty`` + ``init_weights``,
        then load the HF weights when asked, e.g. ``parallel.weights.load_vla_hf_weights``: the trainer
        does); otherwise it is initialised, and loads the HF weights when ``model_cfg.load_hf_weights``.
        """
        if model_cfg.hf_assets_path and (Path(model_cfg.hf_assets_path) / "config.json").is_file():
            args = read_hf_config(model_cfg.hf_assets_path)
        elif model_cfg.load_hf_weights:
            raise FileNotFoundError(f"model.load_hf_weights: no config.json in model.hf_assets_path = {model_cfg.hf_assets_path!r}")
        else:
            args = _flavor_args(model_cfg.flavor)
        if tokenizer is not None:
            args = args.replace(
                image_token_id=tokenizer.image_pad_id,
                video_token_id=tokenizer.video_pad_id,
                vision_start_token_id=tokenizer.vision_start_id,
                vision_end_token_id=tokenizer.vision_end_id,
            )
            if tokenizer.vocab_size > args.text.vocab_size:
                raise ValueError(
                    f"the tokenizer has {tokenizer.vocab_size} tokens but model.flavor {model_cfg.flavor!r} "
                    f"embeds only {args.text.vocab_size}"
                )
        vla = cls(args, expert_cfg, model_cfg.attention_backend)
        if model_cfg.lora_rank > 0:
            vla.add_lora(model_cfg.lora_rank, model_cfg.lora_alpha, model_cfg.lora_targets, model_cfg.lora_components)
        if not next(vla.parameters()).is_meta:
            vla.init_weights()
            if model_cfg.load_hf_weights:
                vla.load_vlm_hf_state_dict(read_hf_state_dict(model_cfg.hf_assets_path))
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

    def add_lora(self, rank: int, alpha: float, targets: list[str], components: list[str]) -> None:
        """LoRA adapters on the named linears of the ``decoder`` and/or ``expert`` transformer layers."""
        parts = self.components()
        for component in components:
            if component not in ("decoder", "expert"):
                raise ValueError(f"model.lora_components: {component!r} is not one of ('decoder', 'expert')")
            layers = parts[component].layers if component in parts else []
            if not len(layers):
                raise ValueError(f"model.lora_components names {component!r}, which has no layers in this model")
            for layer in layers:
                apply_lora(layer, rank, alpha, targets, skip=("expert",))
            self.lora_components.append(component)

    # ------------------------------------------------------------------ components (parallelism, freezing)
    def components(self) -> dict[str, nn.Module]:
        """``vision``, ``decoder`` and (when enabled) ``expert``: views over the parameters of each part."""
        decoder_layers = [_decoder_part(layer) for layer in self.vlm.layers]
        parts: dict[str, nn.Module] = {
            "vision": self.vlm.vision_encoder,
            "decoder": _ComponentView(
                tok_embeddings=self.vlm.tok_embeddings, layers=decoder_layers, norm=self.vlm.norm,
                lm_head=self.vlm.lm_head,
            ),
        }
        if self.expert is not None:
            if self.expert_cfg.fusion == "joint":
                expert_layers = [layer.expert for layer in self.vlm.layers]
            else:
                expert_layers = list(self.expert.layers)
            heads = {"context_proj": self.expert.context_proj} if self.expert_cfg.fusion == "late" else {}
            parts["expert"] = _ComponentView(layers=expert_layers, heads=self.expert.heads, norm=self.expert.norm, **heads)
        return parts

    def blocks(self, component: str) -> list[nn.Module]:
        """The FSDP / activation-checkpointing / compile units of a component.

        Joint fusion: the decoder's blocks are the joint layers (decoder layer i + expert layer i), so
        ``blocks("expert")`` is empty. Late fusion: decoder layers and expert layers separately.
        """
        if component == "vision":
            return list(self.vlm.vision_encoder.blocks)
        if component == "decoder":
            return list(self.vlm.layers)
        if component == "expert":
            if self.expert is None or self.expert_cfg.fusion == "joint":
                return []
            return list(self.expert.layers)
        raise ValueError(f"unknown component {component!r}; choose one of {COMPONENTS}")

    def set_trainable(self, trainable: list[str]) -> None:
        """Freeze every component not in ``trainable`` (``training.trainable``).

        A component with LoRA adapters trains only its adapters in its transformer layers (and, for the
        decoder, keeps embeddings, final norm and LM head frozen); the expert's heads, final norm and
        context projector always train with the expert.
        """
        parts = self.components()
        unknown = [name for name in trainable if name not in COMPONENTS]
        if unknown:
            raise ValueError(f"training.trainable: unknown components {unknown}; choose from {COMPONENTS}")
        for name, part in parts.items():
            for param_name, param in part.named_parameters():
                train = name in trainable
                if train and name in self.lora_components:
                    in_layers = param_name.startswith("layers.")
                    train = is_lora_parameter(param_name) or (name == "expert" and not in_layers)
                param.requires_grad_(train)

    # ------------------------------------------------------------------ export
    def vlm_state_dict(self) -> dict[str, torch.Tensor]:
        """The VLM's state dict in native ``Qwen3VLModel`` names, LoRA merged, expert entries left out."""
        state = {}
        for key, tensor in self.vlm.state_dict().items():
            if not_in_hf_checkpoint(key):
                continue
            state[key] = tensor
        for name, module in self.vlm.named_modules():
            if isinstance(module, LoRALinear) and not not_in_hf_checkpoint(f"{name}.weight"):
                state[f"{name}.weight"] = module.merged_linear().weight.detach()
        return state

    def vlm_hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The VLM part in Hugging Face Qwen3-VL naming (what ``save_hf_checkpoint`` writes)."""
        return Qwen3VLStateDictAdapter(self.vlm.args).to_hf(self.vlm_state_dict())

    def load_vlm_hf_state_dict(self, hf_state: dict[str, torch.Tensor]) -> None:
        """Load HF Qwen3-VL weights into the VLM part; the expert keeps its weights."""
        state = Qwen3VLStateDictAdapter(self.vlm.args).from_hf(hf_state)
        result = self.vlm.load_state_dict(state, strict=False)
        tied = self.vlm.args.text.tie_word_embeddings
        missing = [k for k in result.missing_keys
                   if not not_in_hf_checkpoint(k) and not (tied and k == "lm_head.weight")]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"HF checkpoint does not fit the VLM: missing {missing}, unexpected {result.unexpected_keys}"
            )
        self.vlm.tie_weights()

    # ------------------------------------------------------------------ inputs
    def _prefix(self, batch: dict) -> Prefix:
        input_ids = batch["input_ids"]
        valid = batch.get("attention_mask")
        valid = torch.ones_like(input_ids, dtype=torch.bool) if valid is None else valid.bool()
        doc_ids = batch.get("doc_ids")
        h, visual_mask, deepstack = self.vlm.embed_multimodal(
            input_ids, batch.get("pixel_values"), batch.get("image_grid_thw"),
            batch.get("pixel_values_videos"), batch.get("video_grid_thw"),
        )
        position_ids = batch.get("position_ids")
        if position_ids is None:
            position_ids, _ = self.vlm.position_ids(
                input_ids, valid, batch.get("image_grid_thw"), batch.get("video_grid_thw"), doc_ids
            )
        position_ids = position_ids.to(h.device)
        cos, sin = self.vlm.rotary(position_ids)
        causal = True
        if self.expert is not None and self.expert_cfg.prefix_attention == "bidirectional":
            # pi0's prefix-LM: a robot sample's image tokens also see its instruction. Web samples keep the
            # causal mask, since their text is predicted token by token (bidirectional would leak labels).
            robot = batch.get("has_actions")
            causal = torch.zeros_like(valid[:, 0]) if robot is None else ~robot.bool()
        mask = build_mask(valid, doc_ids, causal=causal, device=h.device)
        # Suffix positions continue after the prefix on all three MRoPE rows (text-style positions).
        last = position_ids.amax(dim=0).masked_fill(~valid, -1).amax(dim=1)
        return Prefix(h, visual_mask, deepstack, cos, sin, mask, valid, last + 1)

    def _robot_inputs(self, batch: dict, need_actions: bool) -> dict[str, torch.Tensor]:
        """Validated state/actions padded to the configured sizes, padded entries zeroed."""
        cfg = self.expert_cfg
        batch_size = batch["input_ids"].shape[0]
        device = batch["input_ids"].device
        out = {}
        state = batch.get("state")
        if cfg.state_mode == "continuous":
            if state is None:
                raise ValueError("batch['state'] is missing; action_expert.state_mode = 'continuous' needs it")
            if state.dim() != 2 or state.shape[0] != batch_size:
                raise ValueError(f"batch['state'] has shape {tuple(state.shape)}, expected ({batch_size}, <= {cfg.max_state_dim})")
            if state.shape[1] > cfg.max_state_dim:
                raise ValueError(
                    f"batch['state'] has {state.shape[1]} dims, more than action_expert.max_state_dim = {cfg.max_state_dim}"
                )
            state = F.pad(state.float(), (0, cfg.max_state_dim - state.shape[1]))
            _raise_nonfinite("state", state, torch.ones_like(state, dtype=torch.bool))
        out["state"] = state
        if not need_actions:
            return out
        actions = batch["actions"]
        if actions.dim() != 3 or actions.shape[0] != batch_size:
            raise ValueError(f"batch['actions'] has shape {tuple(actions.shape)}, expected (B, H, action_dim)")
        steps, dims = actions.shape[1:]
        if steps > cfg.action_horizon:
            raise ValueError(
                f"batch['actions'] holds chunks of {steps} steps, longer than action_expert.action_horizon = {cfg.action_horizon}"
            )
        if dims > cfg.max_action_dim:
            raise ValueError(
                f"batch['actions'] has {dims} action dims, more than action_expert.max_action_dim = {cfg.max_action_dim}"
            )
        pad_steps, pad_dims = cfg.action_horizon - steps, cfg.max_action_dim - dims
        is_pad = batch.get("action_is_pad")
        is_pad = torch.zeros(batch_size, steps, dtype=torch.bool, device=device) if is_pad is None else is_pad.bool()
        dim_mask = batch.get("action_dim_mask")
        dim_mask = torch.ones(batch_size, dims, dtype=torch.bool, device=device) if dim_mask is None else dim_mask.bool()
        if is_pad.shape != (batch_size, steps) or dim_mask.shape != (batch_size, dims):
            raise ValueError(
                f"batch['action_is_pad'] {tuple(is_pad.shape)} / batch['action_dim_mask'] {tuple(dim_mask.shape)} "
                f"do not match batch['actions'] {tuple(actions.shape)}"
            )
        has_actions = batch.get("has_actions")
        has_actions = torch.ones(batch_size, dtype=torch.bool, device=device) if has_actions is None else has_actions.bool()
        actions = F.pad(actions.float(), (0, pad_dims, 0, pad_steps))
        is_pad = F.pad(is_pad, (0, pad_steps), value=True)
        dim_mask = F.pad(dim_mask, (0, pad_dims), value=False)
        valid = valid_action_mask(dim_mask, is_pad, has_actions)
        _raise_nonfinite("actions", actions, valid)
        if state is not None:
            # Web samples carry zero states; whatever they hold must not reach the robot samples' loss.
            out["state"] = torch.where(has_actions[:, None], state, 0.0)
        out["actions"] = torch.where(valid, actions, 0.0)
        out["valid"] = valid
        return out

    # ------------------------------------------------------------------ the two streams
    def _expert_inputs(self, valid, next_position, num_suffix, cond) -> ExpertInputs:
        offsets = torch.arange(num_suffix, device=valid.device)
        positions = (next_position[:, None] + offsets).unsqueeze(0).expand(3, -1, -1)
        cos, sin = self.vlm.rotary(positions)
        mask = suffix_mask(valid, self.expert.blocks())
        return ExpertInputs(cos, sin, mask, cond, self.expert_cfg.knowledge_insulation)

    def _run_vlm(self, prefix: Prefix) -> torch.Tensor:
        return self.vlm.run_layers(prefix.h, prefix.cos, prefix.sin, prefix.mask, prefix.visual_mask, prefix.deepstack)

    def predict_velocity(
        self, prefix: Prefix, state: torch.Tensor | None, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One full pass over prefix and suffix -> (final-norm prefix hidden (B, P, D), velocity (B, H, A))."""
        suffix, cond = self.expert.heads(state, x_t, t)
        if self.expert_cfg.fusion == "late":
            hidden = self._run_vlm(prefix)
            context = hidden.detach() if self.expert_cfg.knowledge_insulation else hidden
            context_kv = self.expert.encode_context(context, prefix.valid)
            suffix = self.expert.run_late(context_kv, prefix.valid, suffix, cond)
            return hidden, self.expert.velocity(suffix, cond)
        inputs = self._expert_inputs(prefix.valid, prefix.next_position, suffix.shape[1], cond)
        h = prefix.h
        for i, layer in enumerate(self.vlm.layers):
            h, suffix = layer(h, prefix.cos, prefix.sin, prefix.mask, None, suffix, inputs)
            h = self.vlm.add_deepstack(h, i, prefix.visual_mask, prefix.deepstack)
        return self.vlm.norm(h), self.expert.velocity(suffix, cond)

    def encode_prefix(self, prefix: Prefix) -> PrefixCache:
        """Run the VLM once and keep what every Euler step needs."""
        if self.expert_cfg.fusion == "late":
            context_kv = self.expert.encode_context(self._run_vlm(prefix), prefix.valid)
            return PrefixCache(prefix.valid, prefix.next_position, context_kv=context_kv)
        kv_cache = KVCache(len(self.vlm.layers))
        self.vlm.run_layers(prefix.h, prefix.cos, prefix.sin, prefix.mask, prefix.visual_mask, prefix.deepstack,
                            kv_cache)
        inputs = self._expert_inputs(prefix.valid, prefix.next_position, self.expert.num_suffix_tokens, None)
        return PrefixCache(prefix.valid, prefix.next_position, kv_cache=kv_cache, expert_inputs=inputs)

    def cached_velocity(
        self, cache: PrefixCache, state: torch.Tensor | None, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Only the expert tokens, against the cached prefix -> velocity (B, H, A)."""
        suffix, cond = self.expert.heads(state, x_t, t)
        if self.expert_cfg.fusion == "late":
            suffix = self.expert.run_late(cache.context_kv, cache.valid, suffix, cond)
        else:
            inputs = dataclasses.replace(cache.expert_inputs, cond=cond)
            for layer in self.vlm.layers:
                _, suffix = layer(None, None, None, None, cache.kv_cache, suffix, inputs)
        return self.expert.velocity(suffix, cond)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss sums and counts of one micro-batch (normalise by the global counts outside).

        Returns ``text_loss_sum``, ``text_tokens``, ``action_loss_sum``, ``action_elements`` and their
        per-sample versions (``*_per_sample``, (B,), for per-source metrics).
        """
        input_ids = batch["input_ids"]
        batch_size = input_ids.shape[0]
        device = input_ids.device
        has_actions = batch.get("has_actions")
        run_expert = self.expert is not None and (
            not self.skip_idle_expert or has_actions is None or bool(has_actions.any())
        )
        prefix = self._prefix(batch)
        zeros = torch.zeros(batch_size, device=device)
        if run_expert:
            robot = self._robot_inputs(batch, need_actions=True)
            actions = robot["actions"]
            noise = torch.randn_like(actions)
            cfg = self.expert_cfg
            t = sample_time(batch_size, device, cfg.time_beta_alpha, cfg.time_beta_beta, cfg.time_scale, cfg.time_offset)
            hidden, velocity = self.predict_velocity(prefix, robot["state"], noisy_actions(actions, noise, t), t)
            action_sums, action_counts = flow_loss_sums(velocity, velocity_target(actions, noise), robot["valid"])
        else:
            hidden = self._run_vlm(prefix)
            action_sums, action_counts = zeros, zeros.long()
        text_sums, text_counts = self._text_loss(hidden, batch["labels"])
        return {
            "text_loss_sum": text_sums.sum(),
            "text_tokens": text_counts.sum(),
            "action_loss_sum": action_sums.sum(),
            "action_elements": action_counts.sum(),
            "text_loss_per_sample": text_sums.detach(),
            "text_tokens_per_sample": text_counts,
            "action_loss_per_sample": action_sums.detach(),
            "action_elements_per_sample": action_counts,
        }

    def _text_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample cross-entropy sums and token counts; logits only at labelled positions."""
        if labels.shape != hidden.shape[:2]:
            raise ValueError(f"batch['labels'] has shape {tuple(labels.shape)}, expected {tuple(hidden.shape[:2])}")
        labelled = labels != IGNORE_INDEX
        rows = labelled.nonzero()[:, 0]
        logits = self.vlm.lm_head(hidden[labelled]).float()
        losses = F.cross_entropy(logits, labels[labelled], reduction="none")
        # index_add keeps the graph connected (a zero sum) even when nothing is labelled.
        sums = hidden.new_zeros(labels.shape[0], dtype=torch.float32).index_add(0, rows, losses)
        return sums, labelled.sum(dim=1)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample_actions(
        self,
        batch: dict,
        num_steps: int | None = None,
        noise: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Integrate the flow from noise (t = 1) to actions (t = 0) with Euler steps: (B, H, max_action_dim).

        ``use_cache``: compute the VLM prefix once and run only the expert tokens per step; ``False``
        runs every layer over prefix and suffix at every step (a reference for checking). Padded action
        dims (per ``batch["action_dim_mask"]`` when given) come back as zeros.
        """
        if self.expert is None:
            raise ValueError("sample_actions needs the Action Expert (action_expert.enable = true)")
        cfg = self.expert_cfg
        num_steps = cfg.num_inference_steps if num_steps is None else num_steps
        if num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps}")
        input_ids = batch["input_ids"]
        shape = (input_ids.shape[0], cfg.action_horizon, cfg.max_action_dim)
        if noise is None:
            noise = torch.randn(shape, device=input_ids.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {shape} (B, action_horizon, max_action_dim)")
        state = self._robot_inputs(batch, need_actions=False)["state"]
        x = noise.float()
        dt = -1.0 / num_steps
        prefix = self._prefix(batch)  # embeddings, vision features, positions, mask: the same at every step
        cache = self.encode_prefix(prefix) if use_cache else None
        for step in range(num_steps):
            t = torch.full((shape[0],), 1.0 + step * dt, device=x.device)
            if use_cache:
                velocity = self.cached_velocity(cache, state, x, t)
            else:
                velocity = self.predict_velocity(prefix, state, x, t)[1]
            x = x + dt * velocity
        dim_mask = batch.get("action_dim_mask")
        if dim_mask is not None:
            x = x * F.pad(dim_mask.bool(), (0, cfg.max_action_dim - dim_mask.shape[1]))[:, None, :]
        return x


def _flavor_args(flavor: str) -> Qwen3VLArgs:
    if flavor not in FLAVORS:
        raise ValueError(f"model.flavor = {flavor!r}; choose one of {sorted(FLAVORS)}")
    return FLAVORS[flavor]


def _decoder_part(layer: nn.Module) -> nn.Module:
    """The decoder half of a layer: a ``DecoderLayer`` itself, or a joint layer without its ``expert``."""
    if isinstance(layer, JointLayer):
        return _ComponentView(attention_norm=layer.attention_norm, attention=layer.attention,
                              ffn_norm=layer.ffn_norm, feed_forward=layer.feed_forward)
    return layer


def _raise_nonfinite(name: str, values: torch.Tensor, valid: torch.Tensor) -> None:
    bad = ~torch.isfinite(values) & valid
    if bool(bad.any()):
        samples = bad.flatten(1).any(dim=1).nonzero()[:, 0].tolist()
        raise ValueError(f"batch['{name}'] contains NaN/Inf in samples {samples} (at unpadded entries)")

