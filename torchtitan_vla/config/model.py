"""The VLM prior (Qwen3-VL) and the Action Expert that turns it into a policy."""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from .constraints import LoRAComponent, NonNegativeInt, PositiveFloat, PositiveInt, Range

Fusion = Literal["joint", "late"]
StateMode = Literal["continuous", "discrete"]
TimeConditioning = Literal["mlp", "adarms"]
PrefixAttention = Literal["causal", "bidirectional"]
RTCSchedule = Literal["exp", "linear", "ones", "zeros"]
Flavor = Literal["debug", "debug-moe", "2B", "4B", "8B", "32B", "30B-A3B", "235B-A22B"]
"""The names of ``models.qwen3_vl.args.FLAVORS`` (a test keeps the two equal)."""
AttentionBackend = Literal["sdpa", "flex"]
ActionDecoding = Literal["flow", "fast"]
LoRATarget = Literal["wq", "wk", "wv", "wo", "w1", "w2", "w3"]
"""The attention and MLP linears of decoder and expert blocks."""


@dataclass
class Model:
    flavor: Flavor = "debug"
    """Qwen3-VL size: debug (tiny, CPU), debug-moe (debug with 8 routed experts in layers 1 and 3), 2B, 4B,
    8B, 32B, 30B-A3B or 235B-A22B. Ignored when ``hf_assets_path`` holds a ``config.json``: the architecture
    then comes from that file."""

    hf_assets_path: str = ""
    """Local folder of a Hugging Face Qwen3-VL checkpoint (config.json, *.safetensors, tokenizer.json), or
    its hub repo id (``Qwen/Qwen3-VL-2B-Instruct``), downloaded once per node into the Hugging Face cache
    (offline: it must be cached; ``huggingface-cli download <repo id>`` pre-downloads it).
    Its ``config.json``, when present, defines the architecture (``flavor`` is then ignored) and its
    ``tokenizer.json`` is the tokenizer unless ``tokenizer_path`` is set. Empty: the flavor's
    architecture."""

    hf_revision: str = ""
    """Hub revision (branch, tag or commit) when ``hf_assets_path`` is a repo id. Empty: the default branch."""

    load_hf_weights: bool = False
    """Initialise the VLM from the safetensors in ``hf_assets_path`` (model weights only) when the run
    has no checkpoint yet: the model is built on meta from ``config.json``, parallelized and
    materialised (the expert keeps its fresh init), then every rank reads only its shard of each tensor.
    A missing folder, ``config.json`` or safetensors is an error; excludes
    ``checkpoint.initial_load_path``."""

    tokenizer_path: str = ""
    """Path of a ``tokenizer.json``. Empty: ``<hf_assets_path>/tokenizer.json``."""

    attention_backend: AttentionBackend = "sdpa"
    """Attention kernel: ``sdpa`` (explicit boolean masks; CPU and GPU) or ``flex`` (CUDA only)."""

    lora_rank: NonNegativeInt = 0
    """Rank of LoRA adapters on the linears named by ``lora_targets``; 0 disables LoRA."""

    lora_alpha: PositiveFloat = 16.0
    """LoRA scaling numerator: the adapter output is multiplied by ``lora_alpha / lora_rank``."""

    lora_targets: list[LoRATarget] = field(default_factory=lambda: ["wq", "wk", "wv", "wo", "w1", "w2", "w3"])
    """Names of the linear layers that get LoRA adapters (matched against the last name in the FQN)."""

    lora_components: list[LoRAComponent] = field(default_factory=lambda: ["decoder", "expert"])
    """Components whose linears get LoRA adapters: any of ``decoder``, ``expert``."""

    fast_tokenizer_path: str = ""
    """FAST action tokenizer file (``scripts/fit_fast_tokenizer.py``). Set: every robot sample ends with
    ``"Action: "`` + its chunk's FAST tokens + EOS, which the VLM learns with ``training.fast_loss_weight``
    and the expert never attends to; the FAST tokens take the top rows of the VLM's vocabulary
    (docs/fast.md). Its horizon and action width must match ``action_expert.action_horizon`` and the robot
    data. Empty: no FAST tokens."""

    action_decoding: ActionDecoding = "flow"
    """How a served policy produces a chunk: ``flow`` (the Action Expert's Euler steps) or ``fast``
    (pi0-FAST: the VLM decodes FAST tokens greedily with its KV cache; needs ``fast_tokenizer_path``)."""


@dataclass
class ActionExpert:
    enable: bool = True
    """Build the Action Expert. Off: a plain Qwen3-VL (VLM-only training, text loss only)."""

    fusion: Fusion = "joint"
    """``joint``: pi0 mixture of transformers, one attention per layer over VLM and expert tokens.
    ``late``: an independent expert that reads the VLM's final hidden states through a projector."""

    hidden_size: NonNegativeInt = 0
    """Width of the expert's residual stream. 0: half the decoder's width."""

    intermediate_size: NonNegativeInt = 0
    """Width of the expert's SwiGLU MLP. 0: the expert width times the decoder's MLP ratio."""

    num_layers: NonNegativeInt = 0
    """Depth of the late-fusion expert. 0: the decoder's depth. Joint fusion always uses the decoder's."""

    action_horizon: PositiveInt = 50
    """H: number of future actions predicted per chunk."""

    max_action_dim: PositiveInt = 32
    """Actions are zero-padded to this width; a per-sample mask marks the real dimensions."""

    max_state_dim: PositiveInt = 32
    """Proprioceptive states are zero-padded to this width."""

    state_mode: StateMode = "continuous"
    """``continuous``: one projected state token before the actions (pi0).
    ``discrete``: the state quantised into text tokens in the prompt (pi0.5)."""

    state_bins: Annotated[int, Range(min=2)] = 256
    """Number of bins per state dimension for ``state_mode = "discrete"``."""

    time_conditioning: TimeConditioning = "mlp"
    """``mlp``: the time embedding is mixed into each action token by an MLP (pi0).
    ``adarms``: adaptive RMSNorm with zero-initialised gates in every expert layer (pi0.5)."""

    prefix_attention: PrefixAttention = "causal"
    """Attention among the VLM prefix tokens of robot samples: ``causal`` (the VLM's own) or
    ``bidirectional`` (pi0's prefix-LM: image tokens also see the instruction). Web samples, whose text is
    predicted token by token, are causal either way."""

    num_inference_steps: PositiveInt = 10
    """Euler steps used by ``sample_actions`` (t goes from 1 to 0)."""

    subtask_max_tokens: PositiveInt = 24
    """Serving a policy trained with subtasks (a source's ``subtask_key``): the most tokens of the subtask
    the VLM generates before the actions are sampled; generation stops earlier at the subtask's end."""

    rtc_max_guidance_weight: PositiveFloat = 5.0
    """Real-time chunking (inference): clip beta of the guidance weight towards the previous chunk (the
    paper's 5). Used only when a request carries a previous chunk (docs/realtime.md)."""

    rtc_schedule: RTCSchedule = "exp"
    """Real-time chunking: how the guidance mask decays over the overlap after the frozen delay steps
    (``exp`` as in the paper, ``linear``, ``ones``, ``zeros`` = only the frozen steps)."""

    min_period: PositiveFloat = 4e-3
    """Shortest period of the sinusoidal time embedding."""

    max_period: PositiveFloat = 4.0
    """Longest period of the sinusoidal time embedding."""
