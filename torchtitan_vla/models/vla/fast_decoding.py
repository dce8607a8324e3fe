"""pi0-FAST decoding: the VLM continues each robot prompt (ending in ``"Action: "``) with FAST tokens,
greedily, with its KV cache (``generate.greedy_decode``), constrained to the FAST ids and EOS and capped
at ``horizon * action_dim + 1`` tokens (the most a valid chunk can need: every FAST token holds at least
one coefficient). Each stream is decoded by the FAST tokenizer; a stream that did not end with EOS or did
not decode cleanly is repaired (unknown tokens dropped, missing high frequencies zero, extra ones cut) and
flagged, so a control loop always gets a finite chunk of the right shape and can count the repairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...data.batch import Batch
from ...processing.fast_vocab import FastActions
from .generate import greedy_decode


@dataclass
class FastChunks:
    chunks: torch.Tensor
    """(B, H, action_dim) float32 normalised chunks, always finite."""
    ok: list[bool]
    """Per row: the stream ended with EOS and decoded without repair."""
    num_tokens: list[int]
    """Per row: FAST tokens generated (EOS not counted)."""
    streams: list[list[int]]
    """Per row: the generated ids as decoded (up to and including EOS), for diagnostics."""


def chunks_from_streams(fast: FastActions, streams: list[list[int]], eos_id: int) -> FastChunks:
    """Decode generated token streams (stopping at the first EOS); never raises."""
    chunks, oks, counts = [], [], []
    for stream in streams:
        ended = eos_id in stream
        tokens = stream[: stream.index(eos_id)] if ended else stream
        chunk, ok = fast.decode(tokens)
        chunk = np.nan_to_num(np.asarray(chunk, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        chunks.append(torch.from_numpy(chunk))
        oks.append(bool(ok and ended))
        counts.append(len(tokens))
    return FastChunks(torch.stack(chunks), oks, counts, [list(s) for s in streams])


@torch.no_grad()
def decode_fast_actions(model, batch: Batch, fast: FastActions, eos_id: int, use_cache: bool = True) -> FastChunks:
    """pi0-FAST chunks of a robot batch whose prompts end with the ``"Action: "`` of the FAST segment."""
    generated = greedy_decode(model, batch, fast.horizon * fast.action_dim + 1,
                              allowed_token_ids=fast.vocab.token_ids, stop_token_ids=[eos_id], use_cache=use_cache,
                              pad_token_id=eos_id)
    streams = [row[: int(n)].tolist() for row, n in zip(generated.ids.cpu(), generated.lengths.cpu())]
    return chunks_from_streams(fast, streams, eos_id)
