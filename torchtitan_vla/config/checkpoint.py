"""Checkpointing, resumption and export."""

from dataclasses import dataclass
from typing import Annotated, Literal

from .constraints import NonNegativeInt, PositiveInt, Range

ExportDtype = Literal["float32", "bfloat16"]
InitialLoadFormat = Literal["dcp", "hf"]


@dataclass
class Checkpoint:
    enable: bool = True
    """Write DCP checkpoints into ``<run folder>/<folder>``."""

    folder: str = "checkpoints"
    """Checkpoint folder inside the run folder."""

    interval: PositiveInt = 500
    """Save every this many steps (and at the end of every stage)."""

    keep_latest_k: NonNegativeInt = 3
    """Keep the newest k complete checkpoints (stage-final ones are always kept); 0 keeps all."""

    async_mode: Literal["disabled", "async"] = "disabled"
    """``disabled`` or ``async`` (save in a background thread; CUDA only)."""

    load_step: Annotated[int, Range(min=0, also=(-1,))] = -1
    """Resume from this step's checkpoint. -1: the newest complete one, if any."""

    initial_load_path: str = ""
    """When the run has no checkpoint yet: a DCP checkpoint folder (e.g. an earlier stage's) or an HF
    folder (see ``initial_load_format``) to initialise the model from."""

    initial_load_format: InitialLoadFormat = "dcp"
    """Format of ``initial_load_path``: ``dcp`` or ``hf`` (a Hugging Face Qwen3-VL folder: its safetensors
    fill the VLM part, the expert keeps its fresh init; the architecture still comes from
    ``model.hf_assets_path``/``model.flavor`` and must match, a mismatched tensor is an error naming it)."""

    initial_load_model_only: bool = True
    """Load only the model weights from ``initial_load_path`` (not optimizer, data or step); ``false`` is
    not supported and refused at load."""

    export_policy: bool = True
    """At the end of the job, export the trained policy (safetensors + config) for serving."""

    export_hf: bool = False
    """At the end of the job, also export the VLM part in Hugging Face format."""

    export_dtype: ExportDtype = "float32"
    """Dtype of exported weights: ``float32`` or ``bfloat16``."""

    export_folder: str = "export"
    """Folder inside the run folder for the exported policy (``policy/``) and VLM (``hf/``)."""
