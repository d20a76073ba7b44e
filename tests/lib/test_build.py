"""hmat.build.compress: property tests (products, promised accuracies, storage), bad arguments,
dtype rules, entry functions, the adaptive certified bound and recompression."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hmat
from hmat.examples import inverse_distance

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
METHODS = ["svd", "aca", "rrqr"]


@st.composite
def matrices(draw, max_side=48):
    """Random matrices: dense noise, low rank, rank-deficient, smooth kernels and zeros."""
    m = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["noise", "lowrank", "kernel", "zero", "spiky"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        a = rng.standard_normal((m, n))
    elif kind == "lowrank":
        r = draw(st.integers(1, 4))
        a = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    elif kind == "kernel":
        x, y = np.linspace(0, 1, m), np.linspace(0, 1, n) + 0.013
        a = 1.0 / (1.0 + 40 * np.abs(x[:, None] - y[None, :]))
    elif kind == "zero":
        a = np.zeros((m, n))
    else:
        a = np.zeros((m, n))
        a[rng.integers(0, m, 3), rng.integers(0, n, 3)] = rng.standard_normal(3) * 1e3
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return a.astype(dtype)


def _build(a, mode, method, leaf, adm, cluster):
    if mode == "rank":
        return hmat.compress(a, rank=3, method=method, leaf_size=leaf, admissibility=adm,
                             cluster=cluster)
    if mode == "tol":
        return hmat.compress(a, tol=1e-3, method=method, leaf_size=leaf, admissibility=adm,
                             cluster=cluster)
    return hmat.compress(a, tol=1e-2, method=method, leaf_size=leaf, adaptive=True,
                         cluster=cluster)


@SETTINGS
@given(a=matrices(), mode=st.sampled_from(["rank", "tol", "adaptive"]),
       method=st.sampled_from(METHODS), leaf=st.integers(1, 9),
       adm=st.sampled_from(["strong", "weak"]), cluster=st.sampled_from(["index", "data"]),
       p=st.integers(0, 4), seed=st.integers(0, 1000))
def test_products_equal_dense(a, mode, method, leaf, adm, cluster, p, seed):
    H = _build(a, mode, method, leaf, adm, cluster)
    dense = H.to_dense()
    assert dense.shape == a.shape and dense.dtype == a.dtype
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(a.shape[1]).astype(a.dtype)
    X = rng.standard_normal((a.shape[1], p)).astype(a.dtype)
    yv = rng.standard_normal(a.shape[0]).astype(a.dtype)
    rtol = 1e-4 if a.dtype == np.float32 else 1e-11
    scale = np.abs(dense).sum() * (1 + np.abs(x).max()) + 1e-30
    y = H @ x
    assert y.dtype == a.dtype and y.shape == (a.shape[0],)
    assert np.abs(y - dense @ x).max() <= rtol * scale
    Y = H @ X
    assert Y.shape == (a.shape[0], p) and Y.dtype == a.dtype
    if p:
        assert np.abs(Y - dense @ X).max() <= rtol * scale * (1 + np.abs(X).max())
    z = H.rmatvec(yv)
    assert z.dtype == a.dtype
    assert np.abs(z - dense.T @ yv).max() <= rtol * scale * (1 + np.abs(yv).max())
    w = yv @ H  # numpy hands x @ H over to HMatrix
    assert w.dtype == a.dtype and np.abs(w - yv @ dense).max() <= rtol * scale * (
        1 + np.abs(yv).max())


@SETTINGS
@given(a=matrices(), method=st.sampled_from(METHODS), leaf=st.integers(1, 9),
       tol=st.sampled_from([0.3, 1e-2, 1e-4]), cluster=st.sampled_from(["index", "data"]))
def test_adaptive_bound_is_certified(a, method, leaf, tol, cluster):
    """The adaptive build's promise ||A - H||_F <= tol ||A||_F holds in every case."""
    H = hmat.compress(a, tol=tol, adaptive=True, method=method, leaf_size=leaf,
                      cluster=cluster)
    a64 = a.astype(np.float64)
    err = np.linalg.norm(a64 - H.to_dense().astype(np.float64))
    assert err <= tol * np.linalg.norm(a64) * (1 + 1e-9) + 1e-300
    assert H.info["certified_bound"] == tol
    # the recorded error is that of the stored factors in exact arithmetic; to_dense() rounds
    rounding = 10 * np.finfo(a.dtype).eps * np.linalg.norm(a64)
    assert abs(H.info["rel_error_fro"] * np.linalg.norm(a64) - err) <= 1e-6 * err + rounding
    # never much above dense: beyond the entries, only ~100-200 bytes of tables per block
    assert H.n_entries <= a.size
    assert H.nbytes - H.dense_nbytes <= 4096 + 200 * H.n_blocks


@SETTINGS
@given(a=matrices(), method=st.sampled_from(["svd", "rrqr"]), leaf=st.integers(1, 9),
       tol=st.sampled_from([0.3, 1e-2, 1e-5]))
def test_tolerance_build_meets_tolerance(a, method, leaf, tol):
    """Per-block relative Frobenius tolerance implies the same global bound (blocks partition A)."""
    a = a.astype(np.float64)
    H = hmat.compress(a, tol=tol, method=method, leaf_size=leaf)
    err = np.linalg.norm(a - H.to_dense())
    assert err <= tol * np.linalg.norm(a) * (1 + 1e-6) + 1e-300


@SETTINGS
@given(a=matrices(), rank=st.integers(1, 6), method=st.sampled_from(METHODS),
       leaf=st.integers(1, 9))
def test_fixed_rank_caps_every_block(a, rank, method, leaf):
    H = hmat.compress(a, rank=rank, method=method, leaf_size=leaf)
    assert H.max_rank <= rank
    for b in H.blocks():
        if b.kind == "lowrank":
            bm, bn = b.row_stop - b.row_start, b.col_stop - b.col_start
            assert b.rank * (bm + bn) < bm * bn  # low rank only where it stores less


def test_svd_fixed_rank_is_optimal_per_block():
    """With SVD each low-rank block is the best rank-k approximation of its block."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64))
    H = hmat.compress(a, rank=4, method="svd", leaf_size=8)
    dense = H.to_dense()
    n_lr = 0
    for b in H.blocks():
        if b.kind != "lowrank":
            continue
        n_lr += 1
        blk = a[b.row_start:b.row_stop, b.col_start:b.col_stop]
        s = np.linalg.svd(blk, compute_uv=False)
        err = np.linalg.norm(blk - dense[b.row_start:b.row_stop, b.col_start:b.col_stop])
        assert np.isclose(err, np.sqrt(np.sum(s[b.rank:] ** 2)))
    assert n_lr > 0


def test_rel_error_is_exact():
    """info['rel_error_fro'] is ||A - H||_F / ||A||_F of the stored factors."""
    a = inverse_distance(200)
    for kw in (dict(rank=3), dict(tol=1e-4), dict(tol=1e-3, adaptive=True),
               dict(tol=1e-4, method="aca")):
        H = hmat.compress(a, leaf_size=16, **kw)
        rel = np.linalg.norm(a - H.to_dense()) / np.linalg.norm(a)
        assert H.info["rel_error_fro"] == pytest.approx(rel, rel=1e-6, abs=1e-13), kw
        assert H.info["norm_fro"] == pytest.approx(np.linalg.norm(a))


def test_kernel_matrix_target():
    """The 1024 x 1024 kernel 1/(1+|i-j|) at tol=1e-6: error <= 1e-6, storage <= 20 % of dense."""
    a = inverse_distance(1024)
    for method in METHODS:
        H = hmat.compress(a, tol=1e-6, method=method)
        rel = np.linalg.norm(a - H.to_dense()) / np.linalg.norm(a)
        assert rel <= 1e-6, method
        assert H.nbytes <= 0.2 * a.nbytes, (method, H.compression_ratio)
    H = hmat.compress(a, tol=1e-6, adaptive=True)
    assert np.linalg.norm(a - H.to_dense()) <= 1e-6 * np.linalg.norm(a)
    assert H.nbytes <= 0.2 * a.nbytes


# ------------------------------------------------------------------------------ entry functions
def test_aca_never_forms_the_matrix():
    """ACA on an entry function: every call asks for one row, one column, or a dense leaf."""
    n = 512
    pts = np.linspace(0.0, 1.0, n)
    calls = []

    def entries(rows, cols):
        calls.append((len(rows), len(cols)))
        return 1.0 / (1.0 + 50.0 * np.abs(pts[rows][:, None] - pts[cols][None, :]))

    H = hmat.compress(entries, shape=(n, n), tol=1e-6, method="aca", leaf_size=32)
    assert max(r * c for r, c in calls) <= 32 * 32  # only dense leaves are formed whole
    assert sum(r * c for r, c in calls) < 0.5 * n * n  # far fewer entries than the matrix
    a = 1.0 / (1.0 + 50.0 * np.abs(pts[:, None] - pts[None, :]))
    assert np.linalg.norm(a - H.to_dense()) <= 1e-5 * np.linalg.norm(a)
    assert "rel_error_fro" not in H.info  # no exact error without the matrix


@pytest.mark.parametrize("method", ["svd", "rrqr"])
def test_block_compressors_on_entry_functions_form_one_block_at_a_time(method):
    """Compressors that need the whole block form only that block, never the matrix; the
    result equals the build from the array."""
    n = 256
    a = inverse_distance(n)
    calls = []

    def entries(rows, cols):
        calls.append((len(rows), len(cols)))
        return a[np.ix_(rows, cols)]

    H = hmat.compress(entries, shape=(n, n), rank=4, method=method, leaf_size=16)
    assert max(r * c for r, c in calls) < n * n / 2
    H0 = hmat.compress(a, rank=4, method=method, leaf_size=16)
    np.testing.assert_allclose(H.to_dense(), H0.to_dense(), atol=1e-12)
    H32 = hmat.compress(entries, shape=(n, n), rank=4, method=method, leaf_size=16,
                        dtype=np.float32)
    assert H32.dtype == np.float32


def test_entry_function_errors():
    with pytest.raises(ValueError, match="shape"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), rank=2)
    with pytest.raises(ValueError, match="array"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), shape=(8, 8), tol=0.1,
                      adaptive=True)
    with pytest.raises(ValueError, match="array"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), shape=(8, 8), tol=0.1,
                      recompress=True)
    with pytest.raises(ValueError, match="non-finite"):
        hmat.compress(lambda r, c: np.full((len(r), len(c)), np.nan), shape=(8, 8), rank=1,
                      leaf_size=2)
    with pytest.raises(TypeError, match="dtype"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), shape=(8, 8), rank=1,
                      dtype=np.int32)


# ------------------------------------------------------------------------------ recompression
def test_recompression_saves_storage_within_budget():
    a = inverse_distance(512)
    H0 = hmat.compress(a, tol=1e-4, eta=4.0, leaf_size=16)
    H1 = hmat.compress(a, tol=1e-4, eta=4.0, leaf_size=16, recompress=True)
    assert H1.nbytes < H0.nbytes
    assert H1.n_blocks < H0.n_blocks  # children were merged into parents
    assert np.linalg.norm(a - H1.to_dense()) <= 1e-4 * np.linalg.norm(a)
    assert H1.info["recompress"] is True


# ------------------------------------------------------------------------------ dtypes, zeros
def test_dtype_rules():
    a = np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32)
    H = hmat.compress(a, rank=3, leaf_size=8)
    assert H.dtype == np.float32
    assert (H @ np.ones(30, np.float32)).dtype == np.float32
    assert (H @ np.ones(30, np.float64)).dtype == np.float64
    assert (H @ np.ones(30, np.int64)).dtype == np.float64
    assert (np.ones(40, np.float32) @ H).dtype == np.float32
    Hi = hmat.compress(np.arange(12).reshape(3, 4), rank=1)
    assert Hi.dtype == np.float64
    assert np.allclose(Hi.to_dense(), np.arange(12).reshape(3, 4))
    assert hmat.compress(np.ones((4, 4), np.float16), rank=1).dtype == np.float64


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    w = torch.arange(20.0).reshape(4, 5)
    H = hmat.compress(w, rank=1)
    assert H.dtype == np.float32
    np.testing.assert_allclose(H.to_dense(), w.numpy())


def test_zero_matrix():
    H = hmat.compress(np.zeros((70, 50)), tol=1e-3, leaf_size=8)
    assert np.all(H @ np.ones(50) == 0)
    assert np.all(H.to_dense() == 0)
    assert H.info["rel_error_fro"] == 0.0


def test_custom_compressor_and_admissibility_callables():
    """method= and admissibility= take callables with the documented signatures."""
    seen = []

    def compressor(block, accuracy):
        seen.append(block.shape)
        return hmat.TruncatedSVD()(block, accuracy)

    a = inverse_distance(128)
    H = hmat.compress(a, rank=3, method=compressor, leaf_size=16)
    assert seen
    np.testing.assert_array_equal(H.to_dense(), hmat.compress(a, rank=3, leaf_size=16).to_dense())


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=-3), ValueError, "rank"),
        (dict(rank=2.5), TypeError, "rank"),
        (dict(tol=0.0), ValueError, "tol"),
        (dict(tol=1.0), ValueError, "tol"),
        (dict(tol=float("nan")), ValueError, "tol"),
        (dict(rank=3, tol=0.1), ValueError, "exactly one"),
        (dict(), ValueError, "exactly one"),
        (dict(rank=3, eta=-1.0), ValueError, "eta"),
        (dict(rank=3, admissibility="weak", eta=-1.0), ValueError, "eta"),
        (dict(rank=3, leaf_size=0), ValueError, "leaf_size"),
        (dict(rank=3, leaf_size=2.0), TypeError, "leaf_size"),
        (dict(rank=3, method="lu"), ValueError, "method"),
        (dict(rank=3, norm="max"), ValueError, "norm"),
        (dict(rank=3, admissibility="strongest"), ValueError, "admissibility"),
        (dict(rank=3, cluster="random"), ValueError, "cluster"),
        (dict(rank=3, cluster="geometric"), ValueError, "row_coords"),
        (dict(rank=3, cluster="geometric", row_coords=np.ones((9, 2)),
              col_coords=np.ones((10, 2))), ValueError, "row_coords has 9 points"),
        (dict(rank=3, adaptive=True), ValueError, "tol"),
        (dict(rank=3, recompress=True), ValueError, "tol"),
        (dict(tol=0.1, adaptive=True, norm="2"), ValueError, "norm='fro'"),
        # ACA cannot honour a spectral-norm tolerance: rejected before any block is built
        (dict(tol=0.1, method="aca", norm="2"), ValueError, "Frobenius"),
        (dict(rank=3, blas_threads=0), ValueError, "blas_threads"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hmat.compress(np.ones((10, 10)), **kwargs)


@pytest.mark.parametrize(
    "a, exc, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "non-finite"),
        (np.array([[1.0, np.inf]]), ValueError, "non-finite"),
        (np.ones(5), ValueError, "2-D"),
        (np.ones((2, 2, 2)), ValueError, "2-D"),
        (np.ones((0, 4)), ValueError, "empty"),
        (np.array([["a", "b"]]), TypeError, "real"),
        (np.ones((3, 3), dtype=complex), TypeError, "real"),
    ],
)
def test_bad_matrices(a, exc, match):
    with pytest.raises(exc, match=match):
        hmat.compress(a, rank=1)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(a=matrices(), method=st.sampled_from(METHODS), leaf=st.integers(1, 9),
       tol=st.sampled_from([0.3, 1e-2, 1e-4]), adaptive=st.booleans(),
       cluster=st.sampled_from(["index", "data"]))
def test_adaptive_precision_bound_includes_rounding(a, method, leaf, tol, adaptive, cluster):
    """precision='adaptive': ||A - H.to_dense()||_F <= tol ||A||_F with H.to_dense() in its own
    float32/float64, the rounding of every stored value included."""
    H = hmat.compress(a, tol=tol, adaptive=adaptive, method=method, leaf_size=leaf,
                      cluster=cluster, precision="adaptive")
    a64 = a.astype(np.float64)
    err = np.linalg.norm(a64 - H.to_dense().astype(np.float64))
    assert err <= tol * np.linalg.norm(a64)
    assert H.info["certified_bound"] == tol


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(a=matrices(), precision=st.sampled_from(["int8", "bfloat16", "float16"]),
       mode=st.sampled_from(["rank", "tol", "adaptive"]), leaf=st.integers(1, 9),
       p=st.integers(1, 3), seed=st.integers(0, 1000))
def test_fixed_precision_products_equal_dense(a, precision, mode, leaf, p, seed):
    """Every fixed storage precision: products equal to_dense() products (float32 rounding)."""
    kw = dict(rank=3) if mode == "rank" else dict(tol=1e-2, adaptive=mode == "adaptive")
    H = hmat.compress(a * (1e-3 if precision == "float16" else 1.0), leaf_size=leaf,
                      precision=precision, **kw)
    dense = H.to_dense(np.float64)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((a.shape[1], p)).astype(np.float32)
    Y = rng.standard_normal((a.shape[0], p)).astype(np.float32)
    scale = np.abs(dense).sum() * (1 + np.abs(X).max() + np.abs(Y).max()) + 1e-30
    assert np.abs(H @ X - dense @ X).max() <= 1e-5 * scale
    assert np.abs(H @ X[:, 0] - dense @ X[:, 0]).max() <= 1e-5 * scale
    assert np.abs(H.T @ Y - dense.T @ Y).max() <= 1e-5 * scale
