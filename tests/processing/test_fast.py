"""The FAST action tokenizer: DCT, ordering, round trip, robustness of decoding, persistence."""

import json

import numpy as np
import pytest

from torchtitan_vla.processing.fast import FastTokenizer, dct_matrix

H, D = 16, 4


def smooth_chunks(n: int, seed: int) -> np.ndarray:
    """Normalised-looking chunks: an offset plus a slow sinusoid per dimension."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, H)[None, :, None]
    offset, amplitude = rng.normal(size=(n, 1, D)), rng.normal(scale=0.5, size=(n, 1, D))
    freq, phase = rng.uniform(0.2, 1.5, size=(n, 1, D)), rng.uniform(0, 2 * np.pi, size=(n, 1, D))
    return offset + amplitude * np.sin(2 * np.pi * freq * t + phase)


@pytest.fixture(scope="module")
def tokenizer() -> FastTokenizer:
    return FastTokenizer.fit(smooth_chunks(1500, seed=0), vocab_size=512, scale=10.0)


def test_dct_is_scipys_orthonormal_dct_ii():
    fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(1).normal(size=(H, D))
    np.testing.assert_allclose(dct_matrix(H) @ x, fft.dct(x, type=2, norm="ortho", axis=0), atol=1e-12)
    np.testing.assert_allclose(dct_matrix(H).T @ (dct_matrix(H) @ x), x, atol=1e-12)


def test_round_trip_within_quantisation_bound(tokenizer):
    # Each rounded coefficient is off by <= 0.5/scale; the orthonormal inverse DCT keeps the L2 norm, so per
    # dimension the L2 error over time is <= sqrt(H) * 0.5 / scale (0.2 here).
    assert tokenizer.l2_error_bound == pytest.approx(np.sqrt(H) * 0.5 / 10.0)
    held_out = smooth_chunks(200, seed=7)
    for chunk, ids in zip(held_out, tokenizer.encode_batch(held_out)):
        decoded, ok = tokenizer.decode(ids)
        assert ok and decoded.shape == (H, D) and decoded.dtype == np.float32
        per_dim_l2 = np.linalg.norm(decoded - chunk, axis=0)
        assert per_dim_l2.max() <= tokenizer.l2_error_bound + 1e-5
    assert tokenizer.encode(held_out[3]) == tokenizer.encode_batch(held_out[3:4])[0]


def test_coefficients_are_low_frequencies_first_across_dimensions(tokenizer):
    # Dimension j holds only DCT frequency k_j (amplitude a_j): its one non-zero integer sits at k_j * D + j.
    basis = dct_matrix(H)
    freqs, amplitudes = [0, 3, 1, 5], [0.8, -0.6, 0.4, 1.1]
    chunk = np.stack([a * basis[k] for k, a in zip(freqs, amplitudes)], axis=1)
    coeffs = tokenizer.coefficients(chunk[None])[0]
    expected = np.zeros(H * D, dtype=np.int64)
    for j, (k, a) in enumerate(zip(freqs, amplitudes)):
        expected[k * D + j] = round(a * tokenizer.scale)
    np.testing.assert_array_equal(coeffs, expected)


def test_single_integer_tokens_come_first(tokenizer):
    alphabet = tokenizer.max_token - tokenizer.min_token + 1
    for i in (0, alphabet // 2, alphabet - 1):
        decoded, _ = tokenizer.decode([i])
        assert decoded.shape == (H, D)
        assert tokenizer._pieces[i] == [tokenizer.min_token + i]
    assert tokenizer.vocab_size > alphabet  # and BPE merges after them


def test_compresses_smooth_chunks(tokenizer):
    lengths = [len(ids) for ids in tokenizer.encode_batch(smooth_chunks(200, seed=9))]
    assert np.mean(lengths) < H * D / 2


def test_decode_never_raises_and_flags_invalid_streams(tokenizer):
    rng = np.random.default_rng(3)
    valid = tokenizer.encode(smooth_chunks(1, seed=5)[0])
    streams = [[], [tokenizer.vocab_size], [-1], [10**30], [None, "x", 1.5], valid[:-1], valid + valid[-1:],
               valid[:1] * 3]
    streams += [rng.integers(0, tokenizer.vocab_size, size=int(rng.integers(1, 3 * H * D))).tolist()
                for _ in range(200)]
    flagged = 0
    for ids in streams:
        decoded, ok = tokenizer.decode(ids)
        assert decoded.shape == (H, D) and decoded.dtype == np.float32 and np.isfinite(decoded).all()
        flagged += not ok
    assert all(not tokenizer.decode(ids)[1] for ids in streams[:8])
    assert flagged >= len(streams) - 5  # a random stream is valid only if it happens to hold exactly H*D integers
    assert tokenizer.decode(valid)[1]


def test_out_of_range_coefficients_are_clamped(tokenizer):
    chunk = np.full((H, D), 50.0)  # far beyond anything fitted
    decoded, ok = tokenizer.decode(tokenizer.encode(chunk))
    assert ok
    assert decoded[:, 0].mean() == pytest.approx(tokenizer.max_token / tokenizer.scale / np.sqrt(H), rel=1e-5)


def test_save_load_round_trip(tokenizer, tmp_path):
    path = tmp_path / "nested" / "fast_tokenizer.json"
    tokenizer.save(path)
    loaded = FastTokenizer.load(path)
    for attr in ("vocab_size", "horizon", "action_dim", "scale", "min_token", "max_token"):
        assert getattr(loaded, attr) == getattr(tokenizer, attr)
    chunks = smooth_chunks(50, seed=11)
    ids = tokenizer.encode_batch(chunks)
    assert loaded.encode_batch(chunks) == ids
    np.testing.assert_array_equal(loaded.decode(ids[0])[0], tokenizer.decode(ids[0])[0])


def test_bad_inputs_name_the_problem(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="vocab_size 8 is smaller"):
        FastTokenizer.fit(smooth_chunks(50, seed=0), vocab_size=8)
    with pytest.raises(ValueError, match=r"shape \(16, 4\), got \(16, 3\)"):
        tokenizer.encode(np.zeros((H, 3)))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="bad.json: not a FAST tokenizer file"):
        FastTokenizer.load(bad)


def test_range_margin_encodes_chunks_beyond_the_fitted_range_exactly():
    fitted = smooth_chunks(300, seed=0)
    tight = FastTokenizer.fit(fitted, vocab_size=1024)
    wide = FastTokenizer.fit(fitted, vocab_size=1024, range_margin=0.5)
    span = tight.max_token - tight.min_token
    assert wide.min_token <= tight.min_token - span // 2 and wide.max_token >= tight.max_token + span // 2
    extreme = np.abs(tight.coefficients(fitted)).max(axis=1).argmax()
    beyond = fitted[extreme:extreme + 1] * 1.3  # its largest coefficient passes the fitted extremes
    assert (tight.coefficients(beyond) > tight.max_token).any() or (tight.coefficients(beyond) < tight.min_token).any()
    err_tight = np.linalg.norm(tight.decode(tight.encode(beyond[0]))[0] - beyond[0], axis=0).max()
    err_wide = np.linalg.norm(wide.decode(wide.encode(beyond[0]))[0] - beyond[0], axis=0).max()
    assert err_wide <= wide.l2_error_bound + 1e-5 < err_tight
