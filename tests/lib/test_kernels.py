"""The product kernels (hmat._kernels) and their schedule against ``H.to_dense()``.

Covers odd shapes, permuted H-matrices, float32/float64 and mixed dtypes, 0, 1 and many vectors,
zero-rank blocks, schedules whose cuts cross blocks (shared blocks), and both the serial and the
parallel path.
"""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat import _kernels
from hmat.hmatrix import HMatrix, _chunk_cost, _schedule

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
    np.testing.assert_allclose(H.to_dense(), ref)
    for p in (None, 0, 1, 3):
        x = RNG.standard_normal(8 if p is None else (8, p))
        np.testing.assert_allclose(H @ x, ref @ x, atol=1e-12)
    assert (H @ np.zeros((8, 0))).shape == (8, 0)


@pytest.mark.parametrize("n_tasks", [1, 2, 3, 7, 40])
@pytest.mark.parametrize("parallel", [False, True])
def test_schedules_with_shared_blocks(n_tasks, parallel):
    """Any task count, cuts inside blocks (shared blocks), serial and parallel: same product."""
    A = _kernel_matrix(203, 157)
    H = hmat.compress(A, rank=6, leaf_size=9, admissibility="weak")
    pn = H._pn
    plan = _schedule(pn.chunks, _chunk_cost(pn, H.lr_desc), H.lr_desc, n_tasks)
    tc = plan.task_chunk
    assert tc[0] == 0 and tc[-1] == len(pn.chunks) - 1 and np.all(np.diff(tc) > 0)
    bounds = pn.chunks[tc]
    # every live low-rank block is owned by the one task holding all its rows, or shared
    owned = [set(plan.task_lr[plan.task_ptr[t]:plan.task_ptr[t + 1]].tolist())
             for t in range(len(tc) - 1)]
    for b, (r0, m, _, _, k, _) in enumerate(H.lr_desc):
        inside = [t for t in range(len(tc) - 1) if bounds[t] <= r0 and r0 + m <= bounds[t + 1]]
        if k == 0:
            assert b not in plan.shared and all(b not in o for o in owned)
        elif inside:
            assert b in owned[inside[0]] and b not in plan.shared
        else:
            assert b in plan.shared and all(b not in o for o in owned)
    for p in (1, 3, 6):
        XT = RNG.standard_normal((p, H.shape[1]))
        YT = np.full((p, H.shape[0]), np.nan)
        _kernels.product(pn.panel, pn.pan_off, pn.chunks, pn.run_ptr, pn.runs, pn.vt, pn.vt_off,
                         H.lr_desc, pn.t_off, *plan, H._wmax, XT, YT, 0.0, parallel)
        np.testing.assert_allclose(YT, (H.to_dense() @ XT.T).T, atol=1e-11)


def test_panels_hold_every_block_once():
    """The row panels are a rearrangement of the block factors: block form round-trips."""
    A = _kernel_matrix(150, 110)
    for kw in (dict(rank=5, leaf_size=8), dict(tol=1e-3, adaptive=True, leaf_size=8),
               dict(rank=3, leaf_size=7, cluster="data")):
        H = hmat.compress(A, **kw)
        H2 = HMatrix(H.shape, H.lr_desc, H.lr_data, H.d_desc, H.d_data, H.row_perm, H.col_perm)
        np.testing.assert_array_equal(H2._pn.panel, H._pn.panel)
        np.testing.assert_array_equal(H2.to_dense(), H.to_dense())
        assert H.n_entries == int(np.sum(H.lr_desc[:, 4] * (H.lr_desc[:, 1] + H.lr_desc[:, 3]))
                                  + np.sum(H.d_desc[:, 1] * H.d_desc[:, 3]))
        for b in range(len(H.lr_desc)):
            u, vt = H.lowrank_factors(b)
            r0, m, c0, n, k, _ = H.lr_desc[b]
            assert u.shape == (m, k) and vt.shape == (k, n)


def test_serial_and_parallel_paths(monkeypatch):
    A = _kernel_matrix(160, 160, np.float32)
    H = hmat.compress(A, rank=5, leaf_size=8)
    x = RNG.standard_normal((160, 3)).astype(np.float32)
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_WORK", 0)
    y_par = _check(H, x)
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_WORK", 1 << 62)
    y_ser = _check(H, x)
    np.testing.assert_allclose(y_par, y_ser, atol=1e-5)


def test_nbytes_counts_the_schedule():
    H = hmat.compress(_kernel_matrix(100, 100), rank=4, leaf_size=8)
    stored = (H.lr_desc.nbytes + H.d_desc.nbytes + sum(a.nbytes for a in H._pn)
              + H._plan.nbytes)
    assert H.nbytes == stored
    assert H._plan.nbytes > 0
    entries = H.lr_data.size + H.d_data.size  # block form holds the same entries
    assert H._pn.panel.size + H._pn.vt.size == entries


def test_products_survive_save_load(tmp_path):
    H = hmat.compress(_kernel_matrix(90, 70, np.float32), rank=5, leaf_size=8)
    H.save(tmp_path / "h.npz")
    H2 = hmat.load(tmp_path / "h.npz")
    x = RNG.standard_normal((70, 4)).astype(np.float32)
    np.testing.assert_array_equal(H @ x, H2 @ x)
    assert H2.nbytes == H.nbytes


def test_thread_pool_starts_passive_without_leaking_the_variable():
    """hmat starts numba's OpenMP pool with sleeping idle threads (busy-waiting ones fight
    numpy's BLAS threads for the cores) and leaves the process environment as it found it."""
    import os

    from hmat import _kernels

    assert "OMP_WAIT_POLICY" not in os.environ or _kernels.WAIT_POLICY == os.environ[
        "OMP_WAIT_POLICY"]
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert _kernels._start_threads(env) == "ACTIVE" and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert _kernels._start_threads(env).startswith("PASSIVE") and env == {}


def test_gather_runs_cover_the_segments_and_merge_neighbours():
    """The product's copy runs are the chunk's segments, merged where both the source entries
    and the panel columns continue: same columns covered, fewer copies."""
    A = _kernel_matrix(300, 260)
    H = hmat.compress(A, rank=5, leaf_size=16)
    pn = H._pn
    assert len(pn.runs) < len(pn.seg)
    for c in range(len(pn.chunks) - 1):
        seg = pn.seg[pn.seg_ptr[c]:pn.seg_ptr[c + 1]]
        runs = pn.runs[pn.run_ptr[c]:pn.run_ptr[c + 1]]
        cover_s = sorted((int(p), int(p + n)) for _, _, n, p in seg)
        cover_r = sorted((int(p), int(p + n)) for _, _, n, p in runs)
        assert cover_r[0][0] == cover_s[0][0] and cover_r[-1][1] == cover_s[-1][1]
        assert sum(b - a for a, b in cover_r) == sum(b - a for a, b in cover_s)
        for src_kind, src, n, pos in runs:  # every run reads one source, contiguously
            inside = seg[(seg[:, 3] >= pos) & (seg[:, 3] < pos + n)]
            assert np.all((inside[:, 0] >= 0) == bool(src_kind))
            assert np.all(inside[:, 1] - src == inside[:, 3] - pos)
