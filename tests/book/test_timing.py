"""The thesis' timing protocol: structure and bookkeeping (no timed assertions)."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmatbook import timing


class _Counting:
    """An operator that counts its products (and checks it always gets the same vector)."""

    def __init__(self, W):
        self.W, self.shape, self.calls, self.seen = W, W.shape, 0, None

    def __matmul__(self, x):
        if self.seen is None:
            self.seen = x.copy()
        assert np.array_equal(x, self.seen) and x.dtype == np.float32
        self.calls += 1
        return self.W @ x


def test_protocol_counts_products_and_uses_one_float32_vector():
    W = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    op = _Counting(W)
    r = timing.time_products(op, W, 103, rounds=4, warmup=5)
    assert op.calls == 103 + 5
    assert r.n_products == 103 and r.rounds == 4
    assert r.t_h_total > 0 and r.t_dense_total > 0
    assert r.us_h == pytest.approx(1e6 * r.t_h_total / 103)
    assert r.time_saving == pytest.approx(1 - r.t_h_total / r.t_dense_total)
    assert r.time_saving_median == pytest.approx(1 - r.us_h_median / r.us_dense_median)
    assert r.ratio_median > 0 and r.time_saving_paired == pytest.approx(1 - r.ratio_median)
    d = r.as_dict()
    assert {"us_h", "us_dense", "time_saving", "time_saving_paired", "threads"} <= set(d)


def test_protocol_with_an_hmatrix_and_one_thread():
    W = np.random.default_rng(1).standard_normal((128, 96)).astype(np.float32)
    H = hmat.compress(W, rank=8, leaf_size=16)
    r = timing.time_products(H, W, 50, rounds=5, threads=1)
    assert r.threads == 1 and np.isfinite(r.time_saving)


def test_protocol_rejects_bad_input():
    W = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        timing.time_products(np.ones((3, 3), np.float32), W, 10)
    with pytest.raises(ValueError, match="x must have shape"):
        timing.time_products(W, W, 10, x=np.ones(4))
    with pytest.raises(TypeError, match="n_products"):
        timing.time_products(W, W, 1.5)
    with pytest.raises(ValueError, match=">= 1"):
        timing.time_products(W, W, 0)
    with pytest.raises(ValueError, match="threads"):
        timing.time_products(W, W, 10, threads=0)
    with pytest.raises(ValueError, match="t_dense"):
        timing.time_saving(1.0, 0.0)


def test_time_saving():
    assert timing.time_saving(1.0, 4.0) == 0.75
    assert timing.time_saving(2.0, 1.0) == -1.0


def test_median_interval_covers_the_median_and_needs_enough_values():
    med, lo, hi = timing.median_interval(np.arange(1.0, 21.0))
    assert med == 10.5 and lo < med < hi
    # n = 20: the 95 % interval is [x_(6), x_(15)] (coverage 95.9 %)
    assert (lo, hi) == (6.0, 15.0)
    assert timing.median_interval([1, 2, 3, 4, 5, 6])[1:] == (1.0, 6.0)
    with pytest.raises(ValueError, match="too few"):
        timing.median_interval([1.0, 2.0, 3.0])


def test_saving_interval_pools_repeats_and_a_slowdown_is_negative():
    W = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    reps = [timing.time_products(W, W, 40, rounds=8, seed=k, warmup=1) for k in range(2)]
    assert all(len(r.ratios) == 8 for r in reps)
    est, lo, hi = timing.saving_interval(reps)
    assert lo <= est <= hi
    slow = timing.TimingResult(10, 6, 1, 2.0, 1.0, 1.0, 1.0, 2.0, ratios=(2.0,) * 6)
    assert timing.saving_interval(slow) == (-1.0, -1.0, -1.0)
