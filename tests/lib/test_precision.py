"""hmat.precision: storage types, the adaptive choice within the error budget, quantized
products, and compress(..., precision=...)."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.precision import STORAGES, choose_dense, choose_lowrank

# worst relative rounding per entry of each storage (int8: half a step of max|row| / 127)
UNIT = {"int8": 0.5 / 127, "bfloat16": 2.0 ** -8, "float16": 2.0 ** -11,
        "float32": 2.0 ** -24, "float64": 2.0 ** -53}


def _smooth(n):
    return 1.0 / (1.0 + np.abs(np.subtract.outer(np.arange(n), np.arange(n))))


def _decaying(seed, m=120, n=90):
    rng = np.random.default_rng(seed)
    k = min(m, n)
    return (rng.standard_normal((m, k)) * np.exp(-np.arange(k) / 8)) @ rng.standard_normal((k, n))


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("per", ["row", "column", "tensor"])
def test_quantize_error_and_bytes(storage, per):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((30, 20)) * np.exp(rng.standard_normal((30, 1)))
    q = hmat.quantize(a, storage, per=per)
    back = q.dequantize(np.float64)
    # every entry within the storage's rounding (int8: relative to its row/column/tensor max)
    ref = {"row": np.max(np.abs(a), axis=1, keepdims=True),
           "column": np.max(np.abs(a), axis=0, keepdims=True),
           "tensor": np.max(np.abs(a))}[per] if storage == "int8" else np.abs(a)
    assert np.all(np.abs(back - a) <= UNIT[storage] * ref * (1 + 1e-6) + 1e-300)
    item = {"int8": 1, "bfloat16": 2, "float16": 2, "float32": 4, "float64": 8}[storage]
    n_scales = {"row": 30, "column": 20, "tensor": 1}[per] if storage == "int8" else 0
    assert q.nbytes == a.size * item + 4 * n_scales
    assert q.shape == a.shape
    np.testing.assert_array_equal(hmat.dequantize(q), q.dequantize())


def test_quantize_rejects_bad_input():
    a = np.ones((3, 3))
    with pytest.raises(ValueError, match="storage must be one of"):
        hmat.quantize(a, "int4")
    with pytest.raises(ValueError, match="per must be one of"):
        hmat.quantize(a, "int8", per="block")
    with pytest.raises(ValueError, match="non-finite"):
        hmat.quantize(np.array([[np.nan]]), "int8")
    with pytest.raises(ValueError, match="float16's range"):
        hmat.quantize(np.array([[1e6]]), "float16")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tol", [0.3, 3e-2, 3e-3])
def test_block_choice_meets_its_share(seed, tol):
    a = _decaying(seed, 40, 30)
    share2 = tol * tol * float(np.sum(a * a))
    d = choose_dense(a, 0, 0, share2)
    assert d.err2 <= share2
    np.testing.assert_allclose(d.err2, np.sum((a - d.decoded()) ** 2), rtol=1e-12)
    lr = choose_lowrank(a, 0, 0, share2)
    assert lr is not None and lr.err2 <= share2
    u, vt = lr.decoded()
    np.testing.assert_allclose(lr.err2, np.sum((a - u @ vt) ** 2), rtol=1e-10)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("tol", [1e-1, 1e-2, 1e-3])
@pytest.mark.parametrize("case", ["smooth", "decaying"])
def test_adaptive_precision_certified_bound_includes_rounding(case, tol, adaptive):
    a = _smooth(96) if case == "smooth" else _decaying(int(tol * 1e4))
    H = hmat.compress(a, tol=tol, adaptive=adaptive, precision="adaptive", leaf_size=12)
    assert isinstance(H, hmat.QuantizedHMatrix) and H.dtype == np.float32
    err = np.linalg.norm(a - H.to_dense().astype(np.float64)) / np.linalg.norm(a)
    assert err <= tol
    assert H.info["certified_bound"] == tol
    assert abs(H.info["rel_error_fro"] - err) <= 1e-6 * max(err, 1e-3)
    # cheaper than the same build in float32
    H32 = hmat.compress(a.astype(np.float32), tol=tol, adaptive=adaptive, leaf_size=12)
    assert H.nbytes < H32.nbytes


@pytest.mark.parametrize("precision", ["int8", "bfloat16", "float16"])
def test_fixed_precision_products_match_to_dense(precision):
    rng = np.random.default_rng(3)
    a = _decaying(4, 70, 50)
    H = hmat.compress(a, tol=1e-3, precision=precision, leaf_size=8, cluster="data")
    assert isinstance(H, hmat.QuantizedHMatrix) and H.precision == precision
    D = H.to_dense(np.float64)
    assert H.info["rel_error_fro"] == pytest.approx(
        np.linalg.norm(a - D) / np.linalg.norm(a), rel=1e-6)
    codes = set(np.unique(H.store.lr_grp[:, 0])) | set(np.unique(H.store.d_run[:, 0]))
    assert codes == {hmat.precision.CODE[precision]}
    for x, y in ((rng.standard_normal(50), rng.standard_normal(70)),
                 (rng.standard_normal((50, 3)), rng.standard_normal((70, 3)))):
        for dt in (np.float32, np.float64):
            tol = 1e-5 if dt == np.float32 else 1e-12
            ref = D @ x
            got = H @ x.astype(dt)
            assert got.dtype == dt
            np.testing.assert_allclose(got, ref, atol=tol * np.abs(ref).max())
            ref = D.T @ y
            np.testing.assert_allclose(H.T @ y.astype(dt), ref, atol=tol * np.abs(ref).max())
            np.testing.assert_allclose(y.T.astype(dt) @ H, ref.T, atol=tol * np.abs(ref).max())


def test_float_precisions_are_plain_hmatrices():
    a = _smooth(64)
    H32 = hmat.compress(a, tol=1e-4, precision="float32", leaf_size=8)
    H64 = hmat.compress(a.astype(np.float32), tol=1e-4, precision="float64", leaf_size=8)
    assert type(H32) is hmat.HMatrix and H32.dtype == np.float32
    assert type(H64) is hmat.HMatrix and H64.dtype == np.float64
    err = np.linalg.norm(a - H32.to_dense()) / np.linalg.norm(a)
    assert H32.info["rel_error_fro"] == pytest.approx(err, rel=1e-6)
    assert hmat.compress(a, tol=1e-4, leaf_size=8).dtype == np.float64  # default unchanged


def test_bad_precision_arguments_name_the_argument():
    a = _smooth(32)
    with pytest.raises(ValueError, match="precision must be one of"):
        hmat.compress(a, tol=1e-2, precision="int4")
    with pytest.raises(ValueError, match="precision='adaptive' needs tol="):
        hmat.compress(a, rank=3, precision="adaptive")
    with pytest.raises(ValueError, match="precision='adaptive' certifies the Frobenius"):
        hmat.compress(a, tol=1e-2, norm="2", precision="adaptive")
    with pytest.raises(ValueError, match="precision='adaptive' needs A as an array"):
        hmat.compress(lambda i, j: a[np.ix_(i, j)], tol=1e-2, shape=a.shape,
                      precision="adaptive")
    with pytest.raises(ValueError, match="float16's range"):
        hmat.compress(a * 1e6, rank=2, precision="float16", leaf_size=8)


@pytest.mark.parametrize("tol", [3e-2, 1e-3])
def test_from_hmatrix_adaptive_within_tol_of_H(tol):
    H = hmat.compress(_decaying(7), tol=1e-4, leaf_size=10)
    Q = hmat.QuantizedHMatrix.from_hmatrix(H, "adaptive", tol)
    D = H.to_dense()
    err = np.linalg.norm(D - Q.to_dense(np.float64)) / np.linalg.norm(D)
    assert err <= tol and Q.info["rel_error_fro"] == pytest.approx(err, rel=1e-6)
    assert Q.nbytes < H.nbytes / 2
    with pytest.raises(ValueError, match="needs tol"):
        hmat.QuantizedHMatrix.from_hmatrix(H, "adaptive")
    with pytest.raises(ValueError, match="plain HMatrix"):
        hmat.QuantizedHMatrix.from_hmatrix(H, "float32")


def test_tiny_tol_keeps_float64_and_the_bound():
    a = _smooth(48)
    H = hmat.compress(a, tol=1e-9, precision="adaptive", leaf_size=8)
    assert H.dtype == np.float64
    assert np.linalg.norm(a - H.to_dense()) <= 1e-9 * np.linalg.norm(a)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_decoding_in_the_kernel_covers_zeros_subnormals_and_signs(precision):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((24, 40)) * 10.0 ** rng.integers(-8, 3, (24, 40))  # subnormal halves
    a[::5] = 0.0
    H = hmat.compress(a, rank=2, admissibility="weak", precision=precision, leaf_size=64)
    assert len(H.d_desc) == 1  # one dense block: every entry goes through the row decoder
    D = H.to_dense(np.float64)
    if precision == "float16":  # decoding is exact
        np.testing.assert_array_equal(D, a.astype(np.float16).astype(np.float64))
    # a low-rank block of tiny values: the group decoder
    L = hmat.compress(a[:, :3] @ a[:3] * 1e-9, rank=3, admissibility="all",
                      precision=precision, leaf_size=64)
    assert len(L.lr_desc) == 1
    x, y = rng.standard_normal(40), rng.standard_normal(24)
    for M in (H, L):
        D = M.to_dense(np.float64)
        for dt in (np.float32, np.float64):
            tol = dict(rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-9 * np.abs(D).sum())
            np.testing.assert_allclose(M @ x.astype(dt), D @ x, **tol)
            np.testing.assert_allclose(M.T @ y.astype(dt), D.T @ y, **tol)


def test_parallel_products_equal_serial(monkeypatch):
    a = _decaying(12, 90, 70)
    H = hmat.compress(a, tol=1e-3, precision="adaptive", leaf_size=10)
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((70, 3)), rng.standard_normal((90, 3))
    serial = (H @ X, H.T @ Y, H @ X[:, 0])
    monkeypatch.setattr(hmat.qhmatrix, "_PARALLEL_MIN_BYTES", 0)
    with hmat.limit_threads(2):
        H._tasks.clear()
        for got, ref in zip((H @ X, H.T @ Y, H @ X[:, 0]), serial, strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
