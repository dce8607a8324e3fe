"""msgpack with NumPy arrays: the wire format openpi clients speak.

An array travels as a map ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and a NumPy scalar as ``{b"__npgeneric__": True, b"data": item, b"dtype":
dtype.str}``, the encoding of ``openpi_client.msgpack_numpy``, so either side can be openpi's.
Object, void and complex dtypes are refused: decoding them would need pickle, which runs code.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("O", "V", "c")


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"cannot send NumPy dtype {obj.dtype} (object, void and complex dtypes are not supported)")
    if isinstance(obj, np.ndarray):
        # tobytes() is C order whatever the memory layout, which is what the decoder assumes.
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot serialize object of type {type(obj).__name__}")


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype = np.dtype(obj[b"dtype"])
        if dtype.kind in _REFUSED_KINDS:
            raise ValueError(f"refusing to decode an array of dtype {dtype}")
        return np.ndarray(buffer=obj[b"data"], dtype=dtype, shape=tuple(obj[b"shape"]))
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """Serialize nested dicts/lists of Python values and NumPy arrays/scalars."""
    return msgpack.packb(obj, default=_encode)


def unpackb(data: bytes) -> Any:
    """Inverse of :func:`packb` (arrays come back read-only, as views of the message)."""
    return msgpack.unpackb(data, object_hook=_decode)


class RequestError(ValueError):
    """A request the server refuses. Its message names the problem in the client's terms (no traceback, no
    server path), so the server sends it to the client as the error frame."""


def decode_observation(message: str | bytes) -> dict[str, Any]:
    """The observation map of one client message; anything else raises ``RequestError``."""
    if isinstance(message, str):
        raise RequestError("expected a binary msgpack-numpy observation, got a text frame")
    try:
        obs = unpackb(message)
    except Exception as exc:  # msgpack's own errors, or an array whose bytes do not fit its dtype and shape
        raise RequestError(f"the message is not msgpack-numpy ({type(exc).__name__}: {exc or 'malformed'})") from None
    if not isinstance(obs, dict):
        raise RequestError(f"an observation must be a map of keys to values, got {type(obs).__name__}")
    return obs
