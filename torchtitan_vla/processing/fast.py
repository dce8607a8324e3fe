"""FAST action tokenizer (Pertsch et al. 2025, "FAST: Efficient Action Tokenization for VLA Models").

A normalised action chunk (H steps, D dimensions) becomes a short sequence of discrete tokens:

1. per dimension, an orthonormal DCT-II over the time axis (H coefficients per dimension);
2. multiply by ``scale`` and round to integers (most high-frequency coefficients of a smooth chunk become 0);
3. flatten low frequencies first across dimensions: coefficient 0 of every dimension, then coefficient 1
   of every dimension, ... (coefficient-major, dimension-minor), H * D integers;
4. map each integer to one character (offset by the smallest integer seen in fitting) and run a BPE,
   trained with the ``tokenizers`` library on the fitted chunks, over that character stream.

Decoding inverts each step. The integer alphabet covers the range ``[min_token, max_token]`` seen in
fitting, so every character stream is encodable; a coefficient outside that range (a chunk unlike any in
the fitting set) is clamped to it, which is the only way the round trip can exceed the quantisation bound
(:attr:`FastTokenizer.l2_error_bound`). Decoding never raises: an id stream a model generated may be
invalid (an unknown id, a coefficient count other than H * D); it is repaired (unknown ids dropped,
missing high-frequency coefficients taken as 0, extra ones dropped) and reported with ``ok=False``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, trainers

FORMAT = "torchtitan_vla.fast_tokenizer"
FORMAT_VERSION = 1
# Integer ``min_token + i`` is the character ``chr(CHAR_BASE + i)``. Starting past Latin-1 keeps the
# alphabet clear of control and whitespace characters; the alphabet must end before the UTF-16
# surrogates (0xD800), which cannot appear in a Python or JSON string.
CHAR_BASE = 0x100
MAX_ALPHABET = 0xD800 - CHAR_BASE
EXPORT_NAME = "fast_tokenizer.json"
"""The tokenizer's file name inside an exported policy folder (train/export.py, serve/policy.py)."""


@cache
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n, n), rows are frequencies: ``coeffs = M @ x`` and ``x = M.T @ coeffs``
    (scipy.fft.dct(x, type=2, norm="ortho", axis=0) and its inverse)."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    matrix.flags.writeable = False
    return matrix


class FastTokenizer:
    """DCT + BPE tokenizer of normalised action chunks of a fixed shape (``horizon``, ``action_dim``).

    Token ids run from 0 to ``vocab_size - 1``; the single-integer tokens come first (id ``i`` is integer
    ``min_token + i``), BPE merges after them.
    """

    def __init__(self, bpe: Tokenizer, horizon: int, action_dim: int, scale: float, min_token: int,
                 max_token: int):
        self.bpe = bpe
        self.horizon = horizon
        self.action_dim = action_dim
        self.scale = float(scale)
        self.min_token = min_token
        self.max_token = max_token
        self.vocab_size = bpe.get_vocab_size()
        # Each id's integers, looked up once: decoding a model's output never goes through the BPE decoder.
        self._pieces = [self._integers(bpe.id_to_token(i)) for i in range(self.vocab_size)]

    @property
    def l2_error_bound(self) -> float:
        """Largest round-trip L2 error over the time axis of one dimension, for coefficients inside the
        fitted range: each coefficient is off by at most 0.5 / scale and the inverse DCT is orthonormal."""
        return math.sqrt(self.horizon) * 0.5 / self.scale

    def coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """Quantised DCT coefficients (N, H * D) int64 of chunks (N, H, D), low frequencies first, not clamped."""
        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or chunks.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f"FAST tokenizer fitted on chunks of shape ({self.horizon}, {self.action_dim}), "
                             f"got {tuple(chunks.shape[1:]) if chunks.ndim == 3 else tuple(chunks.shape)}")
        return _quantise(chunks, self.scale)

    def encode(self, chunk: np.ndarray) -> list[int]:
        """FAST ids of one normalised chunk (H, D)."""
        return self.encode_batch(np.asarray(chunk)[None])[0]

    def encode_batch(self, chunks: np.ndarray) -> list[list[int]]:
        """FAST ids of each chunk of (N, H, D); coefficients outside the fitted range are clamped to it."""
        clamped = np.clip(self.coefficients(chunks), self.min_token, self.max_token)
        texts = [_to_text(row, self.min_token) for row in clamped]
        return [encoding.ids for encoding in self.bpe.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> tuple[np.ndarray, bool]:
        """The chunk (H, D) float32 of a FAST id stream and whether the stream was valid. Never raises: an
        unknown id is dropped and the coefficient count is repaired to H * D (padded with zeros, the
        highest frequencies, or truncated), with ``ok=False``."""
        ok = True
        integers: list[int] = []
        for token in ids:
            try:
                index = int(token)
            except (TypeError, ValueError, OverflowError):
                ok = False
                continue
            if 0 <= index < self.vocab_size:
                integers.extend(self._pieces[index])
            else:
                ok = False
        count = self.horizon * self.action_dim
        if len(integers) != count:
            ok = False
            integers = (integers + [0] * count)[:count]
        coeffs = np.asarray(integers, dtype=np.float64).reshape(self.horizon, self.action_dim) / self.scale
        return (dct_matrix(self.horizon).T @ coeffs).astype(np.float32), ok

    def _integers(self, piece: str) -> list[int]:
        return [ord(char) - CHAR_BASE + self.min_token for char in piece]

    @classmethod
    def fit(cls, chunks: np.ndarray, vocab_size: int, scale: float = 10.0, min_frequency: int = 2,
            range_margin: float = 0.0) -> FastTokenizer:
        """Fit on normalised chunks (N, H, D): the integer range and the BPE merges of their coefficients.

        ``vocab_size`` is the BPE's target size; it must hold the integer alphabet (``max - min + 1``
        integers), and the trainer stops earlier when no pair occurs ``min_frequency`` times.
        ``range_margin`` widens the alphabet beyond the fitted integers by that fraction of their range on
        each side, so chunks slightly outside the fitting set are encoded exactly instead of clamped
        (0: the fitted range, as published).
        """
        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or chunks.shape[0] == 0:
            raise ValueError(f"FAST fit needs action chunks of shape (N, H, D) with N > 0, got {chunks.shape}")
        if not np.isfinite(chunks).all():
            raise ValueError("FAST fit: the action chunks hold NaN or infinite values")
        if scale <= 0 or range_margin < 0:
            raise ValueError(f"FAST fit: scale must be positive and range_margin >= 0, got {scale}, {range_margin}")
        coeffs = _quantise(chunks, scale)
        margin = math.ceil(range_margin * int(coeffs.max() - coeffs.min()))
        min_token, max_token = int(coeffs.min()) - margin, int(coeffs.max()) + margin
        alphabet = max_token - min_token + 1
        if alphabet > MAX_ALPHABET:
            raise ValueError(f"FAST fit: the coefficients span {alphabet} integers (scale {scale}); lower the scale")
        if vocab_size < alphabet:
            raise ValueError(f"FAST fit: vocab_size {vocab_size} is smaller than the {alphabet} integers the "
                             f"coefficients span ({min_token}..{max_token} at scale {scale}); raise vocab_size "
                             "or lower the scale")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False, special_tokens=[],
            initial_alphabet=[chr(CHAR_BASE + i) for i in range(alphabet)])
        # No normaliser and no pre-tokeniser: each chunk's character stream is one BPE word, so merges may
        # span coefficients of different frequencies (the long runs of zeros compress best).
        bpe = Tokenizer(models.BPE())
        bpe.train_from_iterator((_to_text(row, min_token) for row in coeffs), trainer=trainer, length=len(coeffs))
        return cls(bpe, chunks.shape[1], chunks.shape[2], scale, min_token, max_token)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "horizon": self.horizon,
                "action_dim": self.action_dim, "scale": self.scale, "min_token": self.min_token,
                "max_token": self.max_token, "char_base": CHAR_BASE, "bpe": json.loads(self.bpe.to_str())}

    def save(self, path: str | os.PathLike) -> None:
        """Write one JSON file (BPE, scale, chunk shape, integer range), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FastTokenizer:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable FAST tokenizer file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a FAST tokenizer file (format is not '{FORMAT}')")
        if data.get("version") != FORMAT_VERSION or data.get("char_base") != CHAR_BASE:
            raise ValueError(f"{path}: FAST tokenizer version {data.get('version')} / char_base "
                             f"{data.get('char_base')}, this code reads {FORMAT_VERSION} / {CHAR_BASE}")
        missing = [key for key in ("horizon", "action_dim", "scale", "min_token", "max_token", "bpe") if key not in data]
        if missing:
            raise ValueError(f"{path}: FAST tokenizer file lacks {missing}")
        bpe = Tokenizer.from_str(json.dumps(data["bpe"]))
        return cls(bpe, int(data["horizon"]), int(data["action_dim"]), float(data["scale"]),
                   int(data["min_token"]), int(data["max_token"]))


def _quantise(chunks: np.ndarray, scale: float) -> np.ndarray:
    """(N, H, D) float64 -> (N, H * D) int64: DCT over time, scaled and rounded, coefficient-major."""
    coeffs = np.einsum("kt,ntd->nkd", dct_matrix(chunks.shape[1]), chunks)
    return np.rint(coeffs * scale).astype(np.int64).reshape(len(chunks), -1)


def _to_text(integers: np.ndarray, min_token: int) -> str:
    return "".join(map(chr, (integers - min_token + CHAR_BASE).tolist()))
