"""The wire format must be byte-compatible with openpi_client.msgpack_numpy in both directions."""

import numpy as np
import pytest

from torchtitan_vla.serve.protocol import RequestError, decode_observation, packb, unpackb

openpi_msgpack = pytest.importorskip("openpi_client.msgpack_numpy", reason="openpi-client is not installed")


def _observation():
    return {
        "observation/image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "observation/state": np.linspace(-1, 1, 8, dtype=np.float32),
        "strided": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],
        "scalar": np.float64(2.5),
        "prompt": "pick up the cup",
        "nested": {"ids": [1, 2, 3]},
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray | np.generic):
            assert a[key].dtype == b[key].dtype and np.shape(a[key]) == np.shape(b[key]), key
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def test_openpi_reads_what_we_write_and_we_read_what_openpi_writes():
    obs = _observation()
    assert packb(obs) == openpi_msgpack.packb(obs)
    _assert_same(openpi_msgpack.unpackb(packb(obs)), obs)
    _assert_same(unpackb(openpi_msgpack.packb(obs)), obs)


def test_object_dtypes_are_refused():
    with pytest.raises(ValueError, match="object"):
        packb({"x": np.array([object()], dtype=object)})
    with pytest.raises(TypeError, match="set"):
        packb({"x": {1, 2}})


def test_messages_that_are_not_observations_are_refused_in_one_line():
    assert decode_observation(openpi_msgpack.packb(_observation()))["prompt"] == "pick up the cup"
    truncated = openpi_msgpack.packb({"x": np.zeros(4, np.float32)})[:-3]
    for message, problem in [
        ("{}", "got a text frame"),
        (b"\xc1", "not msgpack-numpy"),
        (openpi_msgpack.packb([1, 2]), "must be a map of keys to values, got list"),
        (truncated, "not msgpack-numpy"),
    ]:
        with pytest.raises(RequestError, match=problem) as refused:
            decode_observation(message)
        assert "\n" not in str(refused.value)
