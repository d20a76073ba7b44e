"""hmat.examples: the test matrices, and a smoke run of the library on them (what a user of the
wheel does first: compress, multiply, save/load)."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.examples import exponential_decay, inverse_distance


def test_inverse_distance():
    a = inverse_distance(5)
    assert a.shape == (5, 5) and a.dtype == np.float64
    assert a[0, 0] == 1.0 and a[0, 3] == 0.25 and np.array_equal(a, a.T)
    assert inverse_distance(4, eps=2.0)[1, 1] == 0.5
    assert inverse_distance(3, dtype=np.float32).dtype == np.float32


def test_exponential_decay():
    a = exponential_decay(40, 30, rate=4.0, seed=2)
    assert a.shape == (40, 30)
    np.testing.assert_allclose(np.linalg.svd(a, compute_uv=False), np.exp(-np.arange(30) / 4.0),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(a, exponential_decay(40, 30, rate=4.0, seed=2))  # seeded
    assert not np.array_equal(a, exponential_decay(40, 30, rate=4.0, seed=3))
    assert exponential_decay(8).shape == (8, 8)
    assert exponential_decay(8, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: inverse_distance(0), "n must be"),
        (lambda: inverse_distance(3.0), "n must be"),
        (lambda: inverse_distance(3, eps=0.0), "eps"),
        (lambda: exponential_decay(0), "m must be"),
        (lambda: exponential_decay(3, True), "n must be"),
        (lambda: exponential_decay(3, rate=-1.0), "rate"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_smoke(tmp_path):
    """compress, products, x @ H, save/load on the example matrices."""
    a = inverse_distance(256)
    H = hmat.compress(a, tol=1e-6)
    assert np.linalg.norm(a - H.to_dense()) <= 1e-6 * np.linalg.norm(a)
    assert H.compression_ratio < 1.0
    x = np.random.default_rng(0).standard_normal(256)
    np.testing.assert_allclose(H @ x, a @ x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x @ H, x @ a, rtol=1e-5, atol=1e-5)
    H.save(tmp_path / "h.npz")
    np.testing.assert_array_equal(hmat.load(tmp_path / "h.npz") @ x, H @ x)
    b = exponential_decay(128, rate=8.0)
    Hb = hmat.compress(b, rank=10, method="aca")
    assert Hb.shape == (128, 128) and Hb.max_rank <= 10


# ----------------------------------------------------------------- ACA vs SVD at a fixed rank
def _rel_err(a, **kw):
    return np.linalg.norm(a - hmat.compress(a, **kw).to_dense()) / np.linalg.norm(a)


# Measured on exponential_decay(256, rate=8), strong admissibility, leaf 32 (relative Frobenius
# error, ACA's default oversample 2): rank 10: svd 0.1764, aca 0.2245 (1.27x), plain cross
# approximation 0.4512; rank 20: svd 0.03555, aca 0.03673 (1.03x), plain 0.1491; rank 30: svd
# 0.007812, aca 0.007815. With oversample 3: 1.015x at rank 10, 1.00001x at rank 20.
# The default oversample was 2 when this test was written (rank 10 then failed it, strict
# xfail); it is 3 since, and the criterion (1.1x SVD) is unchanged.
@pytest.mark.parametrize("rank", [10, 20])
def test_aca_with_recompression_is_close_to_svd(rank):
    a = exponential_decay(256, rate=8)
    svd = _rel_err(a, rank=rank, method="svd")
    aca = _rel_err(a, rank=rank, method="aca")
    assert aca <= 1.1 * svd, (aca, svd)


@pytest.mark.parametrize("rank", [10, 20])
def test_aca_recompression_beats_the_plain_cross_approximation(rank):
    a = exponential_decay(256, rate=8)
    svd = _rel_err(a, rank=rank, method="svd")
    aca = _rel_err(a, rank=rank, method="aca")
    plain = _rel_err(a, rank=rank, method=hmat.ACA(recompress=False))
    assert svd <= aca < plain < 1.0  # never worse than storing zero blocks
