"""Data sources, their mixture, and how samples are turned into batches."""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from .constraints import NonNegativeFloat, NonNegativeInt, PositiveInt, Range

SourceKind = Literal["cc12m", "obelics", "lerobot"]
ImageResize = Literal["pad", "stretch"]
Normalization = Literal["mean_std", "quantile", "none"]


@dataclass(kw_only=True)
class DataSource:
    name: str
    """Unique, non-empty name of the source; mixtures and per-source metrics refer to it. Required."""

    kind: SourceKind
    """Format: ``cc12m`` (WebDataset tar shards), ``obelics`` (parquet, interleaved) or ``lerobot``. Required."""

    path: str
    """Local path: a folder (or glob of shards) for web data, the dataset root for LeRobot; or a hub
    dataset repo id (``lerobot/libero``), downloaded once per node into the Hugging Face cache (offline:
    it must be cached). For web data an ``hf://<repo>`` path streams through ``datasets`` instead. Required."""

    revision: str = ""
    """Hub revision (branch, tag or commit) when ``path`` is a repo id. Empty: the default branch."""

    split: str = "train"
    """Split to read (web data through ``datasets``); LeRobot uses ``episodes``."""

    episodes: list[NonNegativeInt] = field(default_factory=list)
    """LeRobot: restrict to these episode indices. Empty: all episodes."""

    camera_keys: list[str] = field(default_factory=list)
    """LeRobot: image/video feature keys used as cameras, in prompt order. Empty: all of them."""

    wrist_camera_keys: list[str] = field(default_factory=list)
    """LeRobot: cameras treated as wrist views (no random crop or rotation during augmentation)."""

    state_key: str = "observation.state"
    """LeRobot: feature key of the proprioceptive state."""

    action_key: str = "action"
    """LeRobot: feature key of the action."""

    state_dims: list[NonNegativeInt] = field(default_factory=list)
    """LeRobot: indices of the ``state_key`` vector the model sees, in the model's order (pick and reorder
    dimensions to line robots up). Empty: every dimension, as stored."""

    action_dims: list[NonNegativeInt] = field(default_factory=list)
    """LeRobot: indices of the ``action_key`` vector the model learns, in the model's order. Empty: every
    dimension, as stored. The source's ``Batch.action_dim_mask`` covers exactly these (the rest, up to
    ``action_expert.max_action_dim``, is padding), so 7-dof and 14-dof sources mix in one batch."""

    delta_action_dims: list[NonNegativeInt] = field(default_factory=list)
    """LeRobot: positions in the selected action learned relative to the current state (action - state),
    e.g. the joints, leaving the gripper absolute. Needs ``stats_path`` from ``scripts/compute_norm_stats.py
    --config`` (statistics of the transformed actions). Serving adds the state back: clients get absolute
    actions. Empty: absolute actions."""

    delta_state_dims: list[NonNegativeInt] = field(default_factory=list)
    """LeRobot: for each entry of ``delta_action_dims``, the position in the selected state it is relative
    to. Empty: the same positions as ``delta_action_dims``."""

    normalization: Normalization = "mean_std"
    """LeRobot: ``mean_std``, ``quantile`` (q01/q99 to [-1, 1]) or ``none``."""

    stats_path: str = ""
    """LeRobot: a stats JSON computed by ``scripts/compute_norm_stats.py``. Empty: the dataset's own
    ``meta/stats.json`` (v2.1: ``meta/episodes_stats.jsonl`` aggregated)."""

    instruction: str = ""
    """LeRobot: a fixed instruction used instead of the dataset's task text (empty: the task text)."""

    subtask_key: str = ""
    """LeRobot: the per-frame language column holding each frame's subtask (``subtask``: LeRobot's
    ``subtask_index`` into ``meta/subtasks.parquet``; or a string feature). The subtask text follows the
    prompt with a text loss (``training.subtask_loss_weight``) and the expert's actions are conditioned on
    it (pi0.5's high-level prediction). Empty: no subtask."""

    image_fetch_fn: str = ""
    """OBELICS: ``module:function`` that returns the bytes of an image URL. Empty: URL images are
    unavailable and their rows are skipped (and counted); embedded bytes and local files always work."""


@dataclass
class Data:
    sources: list[DataSource] = field(default_factory=list)
    """All sources this job may read; each stage picks from them with ``mixture``."""

    mixture: dict[str, NonNegativeFloat] = field(default_factory=dict)
    """Sampling weights by source name. Sources missing here are not read; the weights must sum to more than 0. Empty: every source, equal weight."""

    validation_mixture: dict[str, NonNegativeFloat] = field(default_factory=dict)
    """Weights of the held-out mixture used by the validation hook. Empty: no validation."""

    max_seq_len: PositiveInt = 512
    """Token budget of one sequence; web documents are packed up to it, longer ones truncated."""

    packing: bool = True
    """Pack several web documents into one sequence (no attention across them, positions restart)."""

    pad_to_max_seq_len: bool = True
    """Pad every batch to ``max_seq_len`` (static shapes for torch.compile); off: to the batch's longest."""

    caption_prompt: str = "Describe this image."
    """cc12m: the user's request shown with each image; the caption is the answer (the only loss)."""

    image_size: Annotated[int, Range(min=32, multiple_of=32)] = 224
    """Robot camera frames are resized to image_size x image_size (a multiple of 32) before patchify."""

    image_resize: ImageResize = "pad"
    """Robot cameras to ``image_size``: ``pad`` keeps the aspect ratio (fit, then zero padding centred:
    openpi's and LeRobot pi0's convention) or ``stretch`` (each side scaled independently). Training and
    serving use the same function."""

    timestamp_tolerance_s: Annotated[float, Range(min=0.0, max=1.0)] = 1e-4
    """LeRobot: largest accepted gap (seconds) between a frame's timestamp and its expected time (i/fps)
    or the nearest video frame; beyond it loading stops with an error naming the file, episode and
    timestamp. The default is LeRobot's own ``tolerance_s``."""

    image_min_pixels: PositiveInt = 256 * 32 * 32
    """Web images: smart_resize lower bound on pixels (multiple of 32 x 32)."""

    image_max_pixels: PositiveInt = 512 * 32 * 32
    """Web images: smart_resize upper bound on pixels (at least ``image_min_pixels``)."""

    augment: bool = False
    """Robot images: random crop, resize, small rotation and colour jitter (not on wrist cameras)."""

    num_workers: NonNegativeInt = 2
    """Data-loader worker processes per rank (0 loads in the training process)."""

    prefetch_factor: PositiveInt = 2
    """Batches prefetched per worker."""

    strict: bool = False
    """Stop on a corrupt video, image or row, or a non-finite state/action value, instead of skipping
    (and counting) the sample."""
