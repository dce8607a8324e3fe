"""Qwen's tokenizer, read from a local ``tokenizer.json`` with the ``tokenizers`` library.

Besides loading the real Qwen3-VL tokenizer, :func:`build_debug_tokenizer` writes a small but real
byte-level BPE ``tokenizer.json`` for the tiny ``debug`` flavor and the generated toy world: any text
round-trips, and Qwen's special-token strings sit at the ids the ``debug`` flavor expects.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as _HFTokenizer

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"

# The tokens every part of the pipeline relies on; a tokenizer without one of them is unusable.
REQUIRED_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

# Qwen's special tokens in Qwen's id order (151643, 151644, ...). The debug tokenizer keeps this order
# so that the offset of every special token from <|endoftext|> is the same as in the real vocabulary.
QWEN_SPECIAL_TOKENS = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    VIDEO_PAD,
)

# The debug flavor's embedding has 1024 rows and expects <|endoftext|> at 1003 (its image pad at 1015):
# exactly this many learned tokens come before the special tokens.
DEBUG_NUM_REGULAR_TOKENS = 1003


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids of the special tokens Qwen3-VL's prompts use."""

    def __init__(self, backend: _HFTokenizer, source: str = "<in memory>"):
        self.backend = backend
        self.source = source
        ids = {}
        for token in REQUIRED_SPECIAL_TOKENS:
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise ValueError(f"tokenizer {source} lacks the required special token {token!r}")
            ids[token] = token_id
        self.endoftext_id = ids[ENDOFTEXT]
        self.im_start_id = ids[IM_START]
        self.im_end_id = ids[IM_END]
        self.vision_start_id = ids[VISION_START]
        self.vision_end_id = ids[VISION_END]
        self.image_pad_id = ids[IMAGE_PAD]
        self.video_pad_id = ids[VIDEO_PAD]

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load ``tokenizer.json`` (or the ``tokenizer.json`` inside a checkpoint folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            backend = _HFTokenizer.from_file(str(path))
        except Exception as err:  # the tokenizers library raises a bare Exception on malformed JSON
            raise ValueError(f"tokenizer file {path} could not be parsed: {err}") from err
        return cls(backend, source=str(path))

    @property
    def eos_id(self) -> int:
        """End of an assistant turn: Qwen3-VL Instruct's ``eos_token_id`` is ``<|im_end|>``."""
        return self.im_end_id

    @property
    def pad_id(self) -> int:
        """Qwen pads with ``<|endoftext|>``."""
        return self.endoftext_id

    @property
    def vocab_size(self) -> int:
        """Number of token ids in use (learned plus added). The model's embedding may have more rows."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings inside it become their single ids. Adds no BOS/EOS."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def save(self, path: str | Path) -> None:
        """Write the ``tokenizer.json`` (e.g. next to an exported policy)."""
        self.backend.save(str(path))


# The debug tokenizer: a small word-level vocabulary for the toy world and the tests.
_COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "cyan")
_SHAPES = (
    "square",
    "circle",
    "triangle",
    "star",
    "cross",
    "diamond",
    "cube",
    "ball",
    "block",
    "disk",
    "ring",
    "box",
    "cup",
    "bowl",
)
_POSITIONS = (
    "left",
    "right",
    "top",
    "bottom",
    "center",
    "middle",
    "upper left",
    "upper right",
    "lower left",
    "lower right",
    "top left",
    "top right",
    "bottom left",
    "bottom right",
)
_RELATIONS = (
    "above",
    "below",
    "next to",
    "left of",
    "right of",
    "near",
    "far from",
    "on top of",
    "under",
    "behind",
    "in front of",
    "between",
)
_VERBS = (
    "move to",
    "go to",
    "reach",
    "touch",
    "push",
    "pick up",
    "place",
    "put",
    "grasp",
    "slide",
    "stack",
    "drop",
    "open",
    "close",
    "rotate",
    "turn",
    "find",
    "point at",
)
_WORDS = (
    "a an the this that these those there here is are was be it its of to in on at by for from with and or "
    "not no yes what which where who how many much do does can you i we they he she see show shows shown "
    "image picture photo video frame scene view camera table floor wall robot arm gripper hand object "
    "objects target goal task episode step state action position located color colour shape size small "
    "large big tiny one two three four five six seven eight nine ten first second third last next then "
    "now please describe answer question caption seconds time left right up down forward backward "
    "toward towards away into onto over around inside outside close far near same different other "
    "only all some each every more less most least than very also just has have had will would should "
    "could must may might done success failed try again stop start end moved moves moving reached "
    "picked placed pushed user system assistant Picture Video You are helpful The A There This What Where Move"
).split()
_PUNCTUATION = ". , ; : ! ? ' \" ( ) [ ] { } < > - _ + = * / \\ | @ # $ % ^ & ~ `".split()


def _debug_corpus(extra_words: Sequence[str]) -> list[str]:
    """Deterministic sentences covering the toy world's prompts and captions (no randomness)."""
    lines = []
    for color, shape in itertools.product(_COLORS, _SHAPES):
        lines.append(f"move to the {color} {shape}.")
        lines.append(f"A {color} {shape} on the table.")
    for verb, color, shape in zip(itertools.cycle(_VERBS), itertools.cycle(_COLORS), _SHAPES * 6):
        lines.append(f"{verb} the {color} {shape}")
    for position, (color, shape) in zip(itertools.cycle(_POSITIONS), itertools.product(_COLORS, _SHAPES)):
        lines.append(f"the {color} {shape} is at the {position}.")
    for relation, a, b in zip(itertools.cycle(_RELATIONS), itertools.cycle(_COLORS), reversed(_COLORS * 2)):
        lines.append(f"the {a} square is {relation} the {b} circle.")
    lines.append(" ".join(_WORDS))
    lines.append(" ".join(_PUNCTUATION))
    # Numbers as they appear in prompts: counts, coordinates, discretised states and video timestamps.
    lines.extend(f"{i} <{i / 2:.1f} seconds> {i}.{i % 10} -{i}" for i in range(256))
    lines.append("You are a helpful assistant.")
    # Role names follow <|im_start|> directly, so they are learned without a leading space.
    lines.extend(["system", "user", "assistant"])
    lines.append(" ".join(str(w) for w in extra_words))
    # Repetition weights the prompts' own phrasing over the filler when merges are ranked.
    return lines * 2


def build_debug_tokenizer(path: str | Path, extra_words: Sequence[str] = ()) -> Tokenizer:
    """Write a small byte-level BPE ``tokenizer.json`` to ``path`` and return it loaded.

    ``DEBUG_NUM_REGULAR_TOKENS`` (1003) learned tokens (the 256 byte symbols plus merges learned from
    the toy world's words, digits and punctuation, and ``extra_words``), then Qwen's special tokens from
    ``<|endoftext|>`` (1003) to ``<|video_pad|>`` (1016): 1017 ids, inside the debug flavor's 1024-row
    embedding. Byte-level, so any text round-trips exactly. The output is byte-identical for the same
    ``extra_words``.
    """
    backend = _HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=DEBUG_NUM_REGULAR_TOKENS,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(_debug_corpus(extra_words), trainer=trainer)
    learned = backend.get_vocab_size(with_added_tokens=False)
    if learned != DEBUG_NUM_REGULAR_TOKENS:
        raise RuntimeError(
            f"debug tokenizer learned {learned} tokens, expected {DEBUG_NUM_REGULAR_TOKENS}: the corpus is too small"
        )
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Sorted keys and fixed indentation make the file byte-identical across runs and processes.
    content = json.loads(backend.to_str())
    path.write_text(json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return Tokenizer.from_file(path)
