"""Turning raw content into tokenized Documents: robot prompts, captions and interleaved web pages.

Chat rendering, placeholder expansion and image patchify are the processor's (``processing/``); this
module only decides what each kind of sample says and where the loss goes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..processing.chat import encode_prompt, encode_prompt_answer, image_placeholder
from ..processing.processor import preprocess_image, preprocess_images
from ..processing.tokenizer import ENDOFTEXT, Tokenizer
from .document import Document
from .sample import IGNORE_INDEX


def clean_instruction(text: str) -> str:
    """pi0's prompt cleaning: trimmed, underscores and newlines become spaces."""
    return text.strip().replace("_", " ").replace("\n", " ")


ACTION_PREFIX = "Action: "
"""Opens the FAST action segment of a robot sample (pi0-FAST's postfix); decoding starts after it."""

ROBOT_PROMPT_CACHE = 4096
"""Distinct robot prompts whose token ids are kept per process (instructions x camera layouts)."""


class PromptBuilder:
    """Builds Documents with one tokenizer and the data section's image settings."""

    def __init__(self, tokenizer: Tokenizer, data_cfg, compact_pixels: bool = False):
        self.tokenizer = tokenizer
        self.compact_pixels = compact_pixels
        """Documents hold uint8 patches (``processor.preprocess_images(compact=True)``): loader workers."""
        self.image_token_id = tokenizer.image_pad_id
        self.vision_start_id = tokenizer.vision_start_id
        self.min_pixels, self.max_pixels = data_cfg.image_min_pixels, data_cfg.image_max_pixels
        self.caption_prompt = data_cfg.caption_prompt
        self.resize_mode = data_cfg.image_resize
        self._vision_ids = {tokenizer.vision_start_id, tokenizer.vision_end_id, tokenizer.image_pad_id}
        self._robot_cache: dict[tuple, list[int]] = {}
        self._action_prefix_ids = tokenizer.encode(ACTION_PREFIX)

    def robot(self, images: Sequence[np.ndarray], size: tuple[int, int], instruction: str,
              state_bins: np.ndarray | None = None) -> Document:
        """Cameras + instruction (+ pi0.5's discretised state), ending with the assistant turn's opening.

        No text target: the action expert reads this prefix; every label is -100.
        """
        pixel_values, grid = preprocess_images(list(images), resize_to=size, resize_mode=self.resize_mode,
                                             compact=self.compact_pixels)
        text = clean_instruction(instruction)
        if state_bins is not None:
            text = f"Task: {text}, State: {' '.join(str(int(b)) for b in state_bins)};"
        ids = self._robot_ids(text, tuple(tuple(g.tolist()) for g in grid), keep=state_bins is None)
        per_image = [int(g.prod()) for g in grid]
        return Document(ids, [IGNORE_INDEX] * len(ids), list(pixel_values.split(per_image)), list(grid))

    def subtask_segment(self, doc: Document, subtask: str) -> Document:
        """``doc`` (a robot prompt) followed by the subtask text and ``<|im_end|>`` (its end marker, where
        generation stops), with the text loss on both: pi0.5's high-level prediction."""
        ids = self.tokenizer.encode(clean_instruction(subtask)) + [self.tokenizer.im_end_id]
        labels = doc.labels[:-1] + ids + [IGNORE_INDEX]  # shifted: the prompt's last token predicts the first
        return Document(doc.input_ids + ids, labels, doc.pixel_values, doc.image_grid_thw)

    def action_segment(self, doc: Document, fast_tokens: list[int] | None) -> tuple[Document, list[bool]]:
        """``doc`` followed by ``"Action: "`` + the chunk's FAST tokens + EOS (pi0-FAST's postfix), and the
        per-token flag of that segment. The loss is on the FAST tokens and EOS only: ``"Action: "`` is
        given at inference, where ``fast_tokens`` is None and decoding continues after it."""
        lead = self._action_prefix_ids
        ids, labels = lead, [IGNORE_INDEX] * len(lead)
        if fast_tokens is not None:
            ids = lead + list(fast_tokens) + [self.tokenizer.eos_id]
            labels = labels[:-1] + ids[len(lead):] + [IGNORE_INDEX]
        segment = Document(doc.input_ids + ids, doc.labels + labels, doc.pixel_values, doc.image_grid_thw)
        return segment, [False] * len(doc) + [True] * len(ids)

    def _robot_ids(self, text: str, grids: tuple[tuple[int, ...], ...], keep: bool) -> list[int]:
        """Token ids of a robot prompt. A dataset has few distinct (instruction, camera grid) pairs, so the
        ids are memoised (tokenising the template was a tenth of a sample's build time); pi0.5's binned
        state makes every text new, so those prompts are not kept."""
        ids = self._robot_cache.get((text, grids))
        if ids is None:
            content = [{"type": "image"} for _ in grids] + [{"type": "text", "text": text}]
            ids = encode_prompt(self.tokenizer, [{"role": "user", "content": content}], torch.tensor(grids)).tolist()
            if keep and len(self._robot_cache) < ROBOT_PROMPT_CACHE:
                self._robot_cache[(text, grids)] = ids
        return list(ids)

    def caption(self, image: Image.Image, caption: str) -> Document:
        """A captioning turn: the user shows the image and asks; the loss is on the caption only."""
        pixel_values, grid = preprocess_image(image, self.min_pixels, self.max_pixels, compact=self.compact_pixels)
        content = [{"type": "image"}, {"type": "text", "text": self.caption_prompt}]
        input_ids, labels = encode_prompt_answer(self.tokenizer, [{"role": "user", "content": content}],
                                                 caption, grid[None])
        return Document(input_ids.tolist(), labels.tolist(), [pixel_values], [grid])

    def interleaved(self, items: Sequence[str | Image.Image]) -> Document:
        """A web page as plain text with images in place (no chat template), ended by ``<|endoftext|>``.

        The loss is on every text token and the end token, never on vision tokens.
        """
        ids: list[int] = []
        pixels, grids = [], []
        for item in items:
            if isinstance(item, str):
                ids.extend(self.tokenizer.encode(item))
                continue
            pixel_values, grid = preprocess_image(item, self.min_pixels, self.max_pixels, compact=self.compact_pixels)
            ids.extend(self.tokenizer.encode(image_placeholder(grid)))
            pixels.append(pixel_values)
            grids.append(grid)
        ids.extend(self.tokenizer.encode(ENDOFTEXT))
        targets = [IGNORE_INDEX if t in self._vision_ids else t for t in ids]
        return Document(ids, targets[1:] + [IGNORE_INDEX], pixels, grids)
