"""The product kernels (hmat._kernels) against ``H.to_dense()``: odd shapes, permuted
H-matrices, float32/float64 and mixed dtypes, input layouts, 0, 1 and many vectors, zero-rank
blocks, the serial and the parallel path, and the thread pool's start-up."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hmat
from hmat import _kernels
from hmat.examples import inverse_distance
from hmat.hmatrix import HMatrix

RNG = np.random.default_rng(20240607)


def _kernel_matrix(m, n, dtype=np.float64):
    i = np.arange(m)[:, None] / m
    j = np.arange(n)[None, :] / n
    return (1.0 / (1.0 + 40 * np.abs(i - j)) + 0.01 * RNG.standard_normal((m, n))).astype(dtype)


def _check(H, x, dense=None):
    dense = H.to_dense() if dense is None else dense
    y = H @ x
    ref = dense.astype(y.dtype) @ np.asarray(x, dtype=y.dtype)
    assert y.shape == ref.shape
    tol = 1e-4 if y.dtype == np.float32 else 1e-11
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol * scale)
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (97, 131), (250, 190)])
@pytest.mark.parametrize("p", [None, 0, 1, 2, 3, 5, 8, 17])
def test_products_match_dense(dtype, shape, p):
    A = _kernel_matrix(*shape, dtype=dtype)
    H = hmat.compress(A, rank=4, leaf_size=8)
    assert H.dtype == dtype
    x = RNG.standard_normal(shape[1] if p is None else (shape[1], p)).astype(dtype)
    y = _check(H, x)
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 8, 64, 256])
def test_classifier_shaped_products_and_transposes(dtype, p):
    """The issue-11 cases: a 200 x 256 layer (the classifier's aspect, data-driven ordering, so
    both permutations are set), 1/8/64/256 vectors, ``H @ X``, ``H.T @ Y``, ``X.T @ H.T`` and
    ``Y.T @ H``, against the dense products; the one-vector path (2-row tiles, rank-30 blocks
    on 80-column rows in the classifier) and the cached kernel arguments are both used."""
    A = RNG.standard_normal((200, 256)).astype(dtype)
    H = hmat.compress(A, rank=12, leaf_size=16, cluster="data")
    assert H.row_perm is not None and H.col_perm is not None
    D = H.to_dense()
    tol = 1e-4 if dtype == np.float32 else 1e-11
    X = RNG.standard_normal((256, p)).astype(dtype)
    Y = RNG.standard_normal((200, p)).astype(dtype)
    for got, ref in ((H @ X, D @ X), (H.T @ Y, D.T @ Y), (X.T @ H.T, X.T @ D.T),
                     (Y.T @ H, Y.T @ D), (H @ X[:, 0], D @ X[:, 0]),
                     (H @ np.asfortranarray(X), D @ X), (H @ X[::-1][::-1, :], D @ X)):
        assert got.dtype == dtype and got.shape == ref.shape
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * scale)
    x = X[:, 0].copy()
    assert np.array_equal(H @ x, H @ x)  # the second call reuses the cached arguments


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_permuted_hmatrix(dtype):
    m, n = 173, 211
    rc, cc = RNG.random(m), RNG.random(n)
    A = (1.0 / (1.0 + 30 * np.abs(rc[:, None] - cc[None, :]))).astype(dtype)
    H = hmat.compress(A, rank=5, cluster="geometric", row_coords=rc, col_coords=cc, leaf_size=10)
    assert H.row_perm is not None and H.col_perm is not None
    for p in (None, 1, 4, 9):
        x = RNG.standard_normal(n if p is None else (n, p)).astype(dtype)
        _check(H, x)


def test_input_layouts_and_dtypes():
    A = _kernel_matrix(120, 90)
    H = hmat.compress(A.astype(np.float32), rank=6, leaf_size=8)
    dense = H.to_dense()
    X = RNG.standard_normal((90, 6))
    _check(H, np.asfortranarray(X.astype(np.float32)), dense)  # F-ordered input
    _check(H, X.astype(np.float32)[:, ::2], dense)  # strided input
    _check(H, X[:, 0].astype(np.float32)[::-1], dense)  # negative stride
    y = H @ X  # float32 H, float64 x -> float64 (to_dense rounds U @ Vt to float32: 1e-5)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, dense.astype(np.float64) @ X, atol=1e-5 * np.abs(y).max())
    yi = H @ np.arange(90)  # integers -> float64
    assert yi.dtype == np.float64
    np.testing.assert_allclose(yi, dense.astype(np.float64) @ np.arange(90), rtol=1e-5)
    assert (H @ X.tolist()).shape == (120, 6)  # lists are accepted


def test_zero_rank_blocks_and_p0():
    # a hand-made H-matrix: a zero-rank low-rank block next to a dense one and a rank-2 one
    u = RNG.standard_normal((4, 2))
    vt = RNG.standard_normal((2, 3))
    dense = RNG.standard_normal((4, 5))
    lr_desc = np.array([[0, 4, 0, 3, 2, 0], [4, 4, 0, 8, 0, 14]])  # block 1: rank 0
    H = HMatrix(shape=(8, 8), lr_desc=lr_desc, lr_data=np.concatenate([u.ravel(), vt.ravel()]),
                d_desc=np.array([[0, 4, 3, 5, 0]]), d_data=dense.ravel())
    ref = np.zeros((8, 8))
    ref[:4, :3] = u @ vt
    ref[:4, 3:] = dense
    # the same matrix from its leaves
    H2 = HMatrix.from_blocks((8, 8), [(0, 0, u, vt), (4, 0, np.zeros((4, 0)), np.zeros((0, 8)))],
                             [(0, 3, dense)])
    for h in (H, H2):
        np.testing.assert_allclose(h.to_dense(), ref)
        for p in (None, 0, 1, 3, 6):  # 6: the BLAS route
            x = RNG.standard_normal(8 if p is None else (8, p))
            np.testing.assert_allclose(h @ x, ref @ x, atol=1e-12)
        assert (h @ np.zeros((8, 0))).shape == (8, 0)
        np.testing.assert_allclose(h.rmatvec(np.ones(8)), ref.T @ np.ones(8), atol=1e-12)
    assert H.n_entries == H2.n_entries == 2 * (4 + 3) + 20


def test_serial_parallel_and_blas_paths():
    """The routes of a product give the same numbers: the micro-kernels (one vector and several)
    on the calling thread and over the threads, and the BLAS route that ``H @ X`` takes for many
    vectors (shared blocks: tests/lib/test_layout.py)."""
    A = inverse_distance(1024)
    H = hmat.compress(A, tol=1e-6, leaf_size=32)
    p = 16
    assert p >= _kernels.GEMM_MIN_VECTORS  # H @ X below takes the BLAS route
    X = RNG.standard_normal((1024, p))
    Y = _check(H, X)
    static, zero = H._kernel_args(X.dtype)
    XT = np.ascontiguousarray(X.T)
    for parallel in (False, True):
        for q in (1, 3, p):  # one vector has its own 1-d route
            YT = np.full((q, 1024), np.nan)
            _kernels.product(*static, np.ascontiguousarray(XT[:q]), YT, zero, parallel)
            np.testing.assert_allclose(YT.T, Y[:, :q], rtol=0, atol=1e-12 * np.abs(Y).max())
        Yb = np.empty((1024, p))
        for max_mnk in (_kernels.GEMM_MAX_MNK, 1000, 1 << 62):  # pieces of rows, or none
            _kernels.product_gemm(*static, np.ascontiguousarray(X), Yb, parallel, max_mnk)
            np.testing.assert_allclose(Yb, Y, rtol=0, atol=1e-12 * np.abs(Y).max())
    for j in range(0, p, 5):
        np.testing.assert_allclose(Y[:, j], H @ X[:, j], rtol=0, atol=1e-12 * np.abs(Y).max())


def test_thread_pool_starts_passive_without_leaking_the_variable():
    """hmat starts numba's OpenMP pool with sleeping idle threads (busy-waiting ones fight
    numpy's BLAS threads for the cores) and leaves the process environment as it found it.
    No public surface shows the wait policy: this reads _kernels' own start-up function."""
    assert "OMP_WAIT_POLICY" not in os.environ or _kernels.WAIT_POLICY == os.environ[
        "OMP_WAIT_POLICY"]
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert _kernels._start_threads(env) == "ACTIVE" and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert _kernels._start_threads(env).startswith("PASSIVE") and env == {}


_NESTED_BLAS = """
import numpy as np
import torch  # before hmat: OpenBLAS then finds the OpenMP runtime that numba's region runs on
import numba, hmat
from hmat._threads import _blas_libraries
numba.set_num_threads(2)
A = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
H = hmat.compress(A, rank=13)
X = np.random.default_rng(1).standard_normal((256, 10000)).astype(np.float32)
before = [lib.num_threads for lib in _blas_libraries()]
Y = H @ X
after = [lib.num_threads for lib in _blas_libraries()]
err = np.abs(Y - H.to_dense() @ X).max() / np.abs(Y).max()
parallel = H._work * X.shape[1] >= hmat._kernels.PARALLEL_MIN_WORK
print(before == after, max(before), parallel, err < 1e-5)
"""


def test_parallel_blas_route_runs_one_blas_thread_per_task():
    """Many vectors on 2 threads: the GEMMs run inside numba's parallel tasks, where a threaded
    OpenBLAS would start its own threads beside them (and print "Detect OpenMP Loop and this
    application may hang", 352752 times in one full-profile Kovasznay PINN notebook). The BLAS
    runs on one thread inside the product and gets its thread count back after it. OpenBLAS can
    only see the OpenMP region when torch's OpenMP runtime was loaded before hmat's (as in the
    notebooks); without torch the nesting happens unseen, so the test needs torch."""
    import subprocess
    import sys

    pytest.importorskip("torch")

    env = dict(os.environ, NUMBA_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    env.pop("OMP_WAIT_POLICY", None)
    r = subprocess.run([sys.executable, "-c", _NESTED_BLAS], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    same, blas_threads, parallel, close = r.stdout.split()
    if blas_threads == "1":
        pytest.skip("OpenBLAS runs one thread on this machine: nothing to nest")
    assert (same, parallel, close) == ("True", "True", "True"), r.stdout
    assert "Detect OpenMP Loop" not in r.stderr


def test_gemm_pieces_only_where_the_blas_has_small_matrix_kernels():
    """Row pieces help OpenBLAS's SkylakeX-class kernels and cost the others a re-packing."""
    from hmat._threads import blas_architecture

    assert _kernels.gemm_max_mnk("SkylakeX") == _kernels.GEMM_MAX_MNK
    assert _kernels.gemm_max_mnk("Haswell") > 1 << 60 and _kernels.gemm_max_mnk(None) > 1 << 60
    arch = blas_architecture()
    assert arch is None or (isinstance(arch, str) and arch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_ir_rows_match_numpy_at_every_tail(dtype):
    """hmat._vecdot.rows_dot: every row count (odd, even, none) and every row length around the
    vector width (full vectors only, a masked rest only, both), at an offset into ``a`` and
    ``y``; entries of ``y`` outside ``r0:r0+m`` untouched."""
    from numba import njit

    from hmat._vecdot import rows_dot, vector_bytes

    @njit
    def run(a, off, m, n, z, y, r0):
        rows_dot(a, off, m, n, z, y, r0)

    lanes = vector_bytes() // np.dtype(dtype).itemsize
    for m in (0, 1, 2, 3, 5):
        for n in (1, lanes - 1, lanes, lanes + 1, 3 * lanes, 3 * lanes + 5):
            a = RNG.standard_normal(7 + m * n).astype(dtype)
            z = RNG.standard_normal(n).astype(dtype)
            y = np.full(m + 3, np.nan, dtype=dtype)
            run(a, 7, m, n, z, y, 2)
            ref = a[7:].reshape(m, n).astype(np.float64) @ z.astype(np.float64)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(y[2:2 + m], ref, rtol=tol, atol=tol * n)
            assert np.isnan(y[:2]).all() and np.isnan(y[2 + m:]).all()


def test_vector_width_follows_the_cpu_features():
    from hmat._vecdot import vector_bytes

    assert vector_bytes({"avx512f": True, "avx": True}) == 64
    assert vector_bytes({"avx512f": False, "avx": True}) == 32
    assert vector_bytes({"neon": True}) == 16


def test_vector_ir_rows_refuse_strided_or_mixed_arrays():
    from numba import njit
    from numba.core.errors import TypingError

    from hmat._vecdot import rows_dot

    @njit
    def run(a, z, y):
        rows_dot(a, 0, 1, 2, z, y, 0)

    a = np.ones(4)
    with pytest.raises(TypingError, match="C-contiguous"):
        run(a[::2], a[:2], np.ones(1))
    with pytest.raises(TypingError, match="share a dtype"):
        run(a, a[:2].astype(np.float32), np.ones(1))
