"""Where the FAST action tokens live in the VLM's vocabulary.

pi0-FAST overwrote the tail of PaliGemma's vocabulary (``vocab_size - 1 - 128 - fast_id``, the last 128
ids being special tokens) instead of appending rows, so checkpoints keep their shapes. The same rule
here, generalised to any tokenizer: FAST token ``i`` is the ``i``-th embedding row counted down from the
last one, skipping every id the tokenizer reserves for a special token. For Qwen3-VL (151936 rows,
151669 ids used) that fills the 267 never-used padding rows first, jumps over the 26 special tokens
(151643-151668) and continues into the rarest byte-level BPE merges below them; the tiny debug flavor
(1024 rows, 1017 used) does the same at its scale. docs/fast.md gives the reasoning and the figures.

Embedding and LM-head shapes never change, so HF checkpoints load as they are and the exported VLM stays
an ordinary Qwen3-VL checkpoint for transformers.
"""

from __future__ import annotations

import torch

from .tokenizer import Tokenizer


class FastVocab:
    """FAST ids (0 .. n-1) <-> VLM token ids."""

    def __init__(self, num_fast: int, embedding_rows: int, reserved: set[int]):
        ids, candidate = [], embedding_rows - 1
        while len(ids) < num_fast and candidate >= 0:
            if candidate not in reserved:
                ids.append(candidate)
            candidate -= 1
        if len(ids) < num_fast:
            raise ValueError(f"a FAST vocabulary of {num_fast} tokens does not fit in {embedding_rows} embedding rows "
                             f"beside {len(reserved)} reserved ids")
        self.num_fast = num_fast
        self.token_ids = torch.tensor(ids, dtype=torch.long)
        """(num_fast,) the VLM token id of each FAST id."""
        self._token_of = ids  # per-sample encoding indexes a list, not the tensor
        self._fast_of = {token: i for i, token in enumerate(ids)}

    @classmethod
    def for_tokenizer(cls, num_fast: int, embedding_rows: int, tokenizer: Tokenizer) -> FastVocab:
        """Skips the tokenizer's special (added) tokens: chat-template and vision ids keep their meaning."""
        reserved = set(tokenizer.backend.get_added_tokens_decoder())
        return cls(num_fast, embedding_rows, reserved)

    def to_tokens(self, fast_ids: list[int]) -> list[int]:
        return [self._token_of[i] for i in fast_ids]

    def to_fast(self, token_ids: list[int]) -> list[int]:
        """FAST ids of VLM tokens; a token outside the FAST range maps to -1."""
        return [self._fast_of.get(int(t), -1) for t in token_ids]


class FastActions:
    """A fitted FAST tokenizer placed in the VLM's vocabulary: normalised chunk <-> VLM token ids."""

    def __init__(self, fast_tokenizer, vocab: FastVocab):
        self.fast = fast_tokenizer
        self.vocab = vocab

    @property
    def horizon(self) -> int:
        return int(self.fast.horizon)

    @property
    def action_dim(self) -> int:
        return int(self.fast.action_dim)

    def tokens(self, chunk) -> list[int]:
        """VLM token ids of one normalised (horizon, action_dim) chunk."""
        return self.vocab.to_tokens(self.fast.encode(chunk))

    def decode(self, token_ids: list[int]):
        """(chunk (horizon, action_dim) float32, ok) of generated VLM tokens. Never raises: a non-FAST token
        is dropped and a wrong coefficient count repaired by the FAST tokenizer, with ``ok`` False."""
        return self.fast.decode(self.vocab.to_fast(token_ids))


def load_fast_actions(path: str, tokenizer: Tokenizer, embedding_rows: int) -> FastActions:
    """The FAST tokenizer file at ``path`` (``model.fast_tokenizer_path``) placed in a vocabulary of
    ``embedding_rows`` rows beside ``tokenizer``'s special tokens."""
    from .fast import FastTokenizer  # noqa: PLC0415 (the fitted tokenizer's module needs scipy-free numpy only)

    fast = FastTokenizer.load(path)
    return FastActions(fast, FastVocab.for_tokenizer(fast.vocab_size, embedding_rows, tokenizer))
