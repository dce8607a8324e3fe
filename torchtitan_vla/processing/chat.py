"""Qwen3-VL Instruct's chat template, vision-placeholder expansion and (prompt, answer) -> training ids.

Messages are dicts ``{"role": "system" | "user" | "assistant", "content": str | list[item]}`` with items
``{"type": "text", "text": ...}``, ``{"type": "image"}`` or ``{"type": "video"}`` (the template also takes
an item holding an ``image``/``image_url``/``video`` key). Rendering follows the hub's Instruct template
text for these roles; each image becomes ``<|vision_start|><|image_pad|><|vision_end|>`` and each video
``<|vision_start|><|video_pad|><|vision_end|>`` until :func:`expand_vision_placeholders` expands them
with the processor's grids, as Qwen3-VL's processor does:

* image: ``<|vision_start|>`` + ``grid.prod() // 4`` x ``<|image_pad|>`` + ``<|vision_end|>``;
* video: per temporal patch ``<{t:.1f} seconds><|vision_start|>`` + ``h*w // 4`` x ``<|video_pad|>`` +
  ``<|vision_end|>``, replacing the template's whole ``<|vision_start|><|video_pad|><|vision_end|>``
  (transformers 4.57 and Qwen's own pipeline; 5.x leaves the template's outer pair around it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from .processor import MERGE_SIZE
from .tokenizer import IM_END, IM_START, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, Tokenizer

IGNORE_INDEX = -100
"""Label of positions that carry no loss."""

IMAGE_PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END
VIDEO_PLACEHOLDER = VISION_START + VIDEO_PAD + VISION_END
_PLACEHOLDER_RE = re.compile(f"{re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)}")


def _item_kind(item, where: str) -> str:
    """'image', 'video' or 'text', decided the way the template's conditions decide it."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: content items must be dicts, got {type(item).__name__}")
    kind = item.get("type")
    if kind == "image" or "image" in item or "image_url" in item:
        return "image"
    if kind == "video" or "video" in item:
        return "video"
    if "text" in item:
        return "text"
    raise ValueError(f"{where}: content item {item!r} is neither text, image nor video")


def _render_text_only(content, where: str) -> str:
    if isinstance(content, str):
        return content
    pieces = []
    for item in content:
        if _item_kind(item, where) != "text":
            # The template silently drops vision items here, which would leave images without placeholders.
            raise ValueError(f"{where}: only user messages may hold images or videos")
        pieces.append(item["text"])
    return "".join(pieces)


def render_messages(messages: Sequence[dict], add_generation_prompt: bool = False, add_vision_id: bool = False) -> str:
    """The chat template's text, with one unexpanded placeholder per image/video.

    ``add_vision_id`` prefixes ``Picture N: `` / ``Video N: `` like the template's option of that name.
    """
    if not messages:
        raise ValueError("messages is empty")
    counts = {"image": 0, "video": 0}
    labels = {"image": "Picture", "video": "Video"}
    out = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        where = f"messages[{index}] ({role})"
        if content is None:
            raise ValueError(f"{where} has no content")
        if role == "system":
            if index != 0:
                raise ValueError(f"{where}: a system message must be the first message")
            out.append(f"{IM_START}system\n{_render_text_only(content, where)}{IM_END}\n")
        elif role == "assistant":
            out.append(f"{IM_START}assistant\n{_render_text_only(content, where)}{IM_END}\n")
        elif role == "user":
            out.append(f"{IM_START}user\n")
            for item in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                kind = _item_kind(item, where)
                if kind == "text":
                    out.append(item["text"])
                    continue
                counts[kind] += 1
                if add_vision_id:
                    out.append(f"{labels[kind]} {counts[kind]}: ")
                out.append(IMAGE_PLACEHOLDER if kind == "image" else VIDEO_PLACEHOLDER)
            out.append(f"{IM_END}\n")
        else:
            raise ValueError(f"{where}: unsupported role {role!r} (expected system, user or assistant)")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def _grid_rows(grid_thw, name: str) -> list[tuple[int, int, int]]:
    if grid_thw is None:
        return []
    grid = torch.as_tensor(grid_thw, dtype=torch.long)
    if grid.ndim == 1:
        grid = grid.unsqueeze(0)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3) or (3,), got {tuple(grid.shape)}")
    return [tuple(int(v) for v in row) for row in grid]


def image_placeholder(grid_thw: Sequence[int]) -> str:
    """The expanded text of one image: ``t*h*w / merge**2`` image pads between vision start/end."""
    t, h, w = (int(v) for v in grid_thw)
    return VISION_START + IMAGE_PAD * (t * h * w // MERGE_SIZE**2) + VISION_END


def video_placeholder(grid_thw: Sequence[int], timestamps: Sequence[float]) -> str:
    """The expanded text of one video: per temporal patch its ``<t seconds>`` and its own vision block."""
    t, h, w = (int(v) for v in grid_thw)
    if len(timestamps) != t:
        raise ValueError(f"video grid has {t} temporal patches but {len(timestamps)} timestamps were given")
    frame = VISION_START + VIDEO_PAD * (h * w // MERGE_SIZE**2) + VISION_END
    return "".join(f"<{float(ts):.1f} seconds>{frame}" for ts in timestamps)


def expand_vision_placeholders(
    text: str,
    image_grid_thw=None,
    video_grid_thw=None,
    video_timestamps: Sequence[Sequence[float]] | None = None,
) -> str:
    """Replace each placeholder, in order of appearance, by its expansion (images and videos separately)."""
    image_grids = _grid_rows(image_grid_thw, "image_grid_thw")
    video_grids = _grid_rows(video_grid_thw, "video_grid_thw")
    video_timestamps = list(video_timestamps or [])
    if len(video_timestamps) != len(video_grids):
        raise ValueError(f"got {len(video_grids)} video grids but {len(video_timestamps)} timestamp lists")
    found = _PLACEHOLDER_RE.findall(text)
    n_images = found.count(IMAGE_PLACEHOLDER)
    n_videos = len(found) - n_images
    if n_images != len(image_grids) or n_videos != len(video_grids):
        raise ValueError(
            f"the text has {n_images} image and {n_videos} video placeholders but {len(image_grids)} image "
            f"and {len(video_grids)} video grids were given"
        )
    images = iter(image_grids)
    videos = iter(zip(video_grids, video_timestamps))

    def expand(match: re.Match) -> str:
        if match.group() == IMAGE_PLACEHOLDER:
            return image_placeholder(next(images))
        return video_placeholder(*next(videos))

    return _PLACEHOLDER_RE.sub(expand, text)


def render_chat(
    messages: Sequence[dict],
    image_grid_thw=None,
    video_grid_thw=None,
    video_timestamps: Sequence[Sequence[float]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The fully expanded prompt text the model reads."""
    text = render_messages(messages, add_generation_prompt=add_generation_prompt)
    return expand_vision_placeholders(text, image_grid_thw, video_grid_thw, video_timestamps)


def encode_prompt(
    tokenizer: Tokenizer,
    messages: Sequence[dict],
    image_grid_thw=None,
    video_grid_thw=None,
    video_timestamps: Sequence[Sequence[float]] | None = None,
) -> torch.Tensor:
    """Token ids (S,) of the prompt followed by the assistant's turn opening, ready for generation."""
    text = render_chat(messages, image_grid_thw, video_grid_thw, video_timestamps, add_generation_prompt=True)
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def encode_prompt_answer(
    tokenizer: Tokenizer,
    prompt_messages: Sequence[dict],
    answer: str,
    image_grid_thw=None,
    video_grid_thw=None,
    video_timestamps: Sequence[Sequence[float]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (S,), labels (S,)) of the conversation ``prompt_messages`` + assistant ``answer``.

    ``input_ids`` is the template's rendering of the whole conversation (ending ``<|im_end|>\\n``).
    ``labels`` is ALREADY SHIFTED: ``labels[t]`` is the target of the prediction at position t, i.e.
    ``input_ids[t + 1]`` where that token belongs to the answer or its closing ``<|im_end|>``, else -100.
    The answer is tokenized on its own, so its tokens never merge with the prompt's.
    """
    if prompt_messages and prompt_messages[-1].get("role") == "assistant":
        raise ValueError("prompt_messages must not end with an assistant message: the answer is that turn")
    prompt_ids = encode_prompt(tokenizer, prompt_messages, image_grid_thw, video_grid_thw, video_timestamps)
    answer_ids = torch.tensor([*tokenizer.encode(answer), tokenizer.im_end_id], dtype=torch.long)
    tail_ids = torch.tensor(tokenizer.encode("\n"), dtype=torch.long)
    input_ids = torch.cat([prompt_ids, answer_ids, tail_ids])
    targets = torch.full_like(input_ids, IGNORE_INDEX)
    targets[len(prompt_ids) : len(prompt_ids) + len(answer_ids)] = answer_ids
    labels = torch.cat([targets[1:], targets.new_full((1,), IGNORE_INDEX)])
    return input_ids, labels
