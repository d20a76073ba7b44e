"""hmatbook.complexity: the smooth kernel (matrix and entries), the log-log slope, storage and
product-time measurements, reference curves."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmatbook import complexity as cx


def test_complexity_helpers():
    assert cx.fit_slope([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        cx.fit_slope([1], [1])
    with pytest.raises(ValueError):
        cx.fit_slope([1, 2], [0, 1])
    n = 128
    f = cx.smooth_kernel_entries(n)
    np.testing.assert_allclose(f(np.arange(n), np.arange(n)), cx.smooth_kernel(n), rtol=1e-6)
    H = hmat.compress(cx.smooth_kernel(n), tol=1e-4)
    r = cx.measure_storage_and_time(H, cx.smooth_kernel(n), repeats=2)
    assert r["nbytes"] == H.nbytes and r["t_h"] > 0 and r["t_dense"] > 0
    ref = cx.reference_curves([256, 512], 1.0)
    assert ref["n^2"][1] == pytest.approx(4.0) and ref["k n log n"][1] == pytest.approx(
        512 * 9 / (256 * 8))
    w = cx.random_init_weight(64)
    assert abs(w).max() <= 1 / 8 and w.dtype == np.float32
