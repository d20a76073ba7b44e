"""Property and unit tests of the hmat core: products, promised accuracies, storage, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hmat

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


def test_blocks_tile_the_matrix_once():
    a = np.random.default_rng(1).standard_normal((37, 53))
    for adm in ("strong", "weak"):
        H = hmat.compress(a, rank=2, leaf_size=4, admissibility=adm)
        cover = np.zeros(a.shape, dtype=int)
        for b in H.blocks():
            cover[b.row_start:b.row_stop, b.col_start:b.col_stop] += 1
        assert np.all(cover == 1)


def test_svd_fixed_rank_is_optimal_per_block():
    """With SVD each low-rank block is the best rank-k approximation of its block."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 64))
    H = hmat.compress(a, rank=4, method="svd", leaf_size=8)
    dense = H.to_dense()
    for b in H.blocks():
        if b.kind != "lowrank":
            continue
        blk = a[b.row_start:b.row_stop, b.col_start:b.col_stop]
        s = np.linalg.svd(blk, compute_uv=False)
        err = np.linalg.norm(blk - dense[b.row_start:b.row_stop, b.col_start:b.col_stop])
        assert np.isclose(err, np.sqrt(np.sum(s[b.rank:] ** 2)))


def test_kernel_matrix_target():
    """The 1024 x 1024 kernel 1/(1+|i-j|) at tol=1e-6: error <= 1e-6, storage <= 20 % of dense."""
    i = np.arange(1024)
    a = 1.0 / (1.0 + np.abs(i[:, None] - i[None, :]))
    for method in METHODS:
        H = hmat.compress(a, tol=1e-6, method=method)
        rel = np.linalg.norm(a - H.to_dense()) / np.linalg.norm(a)
        assert rel <= 1e-6, method
        assert H.nbytes <= 0.2 * a.nbytes, (method, H.compression_ratio)
    H = hmat.compress(a, tol=1e-6, adaptive=True)
    assert np.linalg.norm(a - H.to_dense()) <= 1e-6 * np.linalg.norm(a)
    assert H.nbytes <= 0.2 * a.nbytes


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


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_aca_rank_deficient_blocks(rank):
    rng = np.random.default_rng(rank)
    blk = rng.standard_normal((40, rank)) @ rng.standard_normal((rank, 30))
    with np.errstate(all="raise"):
        u, v = hmat.aca(blk, hmat.Accuracy(rtol=1e-10))
        u2, v2 = hmat.aca(blk, hmat.Accuracy(rank=20))
        u0, v0 = hmat.aca(np.zeros((10, 12)), hmat.Accuracy(rank=5))
    assert u.shape[1] <= rank + 1 and u2.shape[1] <= rank + 1
    assert np.allclose(u2 @ v2.T, blk, atol=1e-8 * np.abs(blk).max())
    assert u0.shape == (10, 0) and v0.shape == (12, 0)


@pytest.mark.parametrize("method", METHODS)
def test_compressors_meet_accuracy(method):
    rng = np.random.default_rng(0)
    s = 2.0 ** -np.arange(30)
    q1, _ = np.linalg.qr(rng.standard_normal((50, 30)))
    q2, _ = np.linalg.qr(rng.standard_normal((40, 30)))
    blk = (q1 * s) @ q2.T
    comp = getattr(hmat, method)
    u, v = comp(blk, hmat.Accuracy(rank=5))
    assert u.shape == (50, 5) and v.shape == (40, 5)
    u, v = comp(blk, hmat.Accuracy(rtol=1e-3))
    err = np.linalg.norm(blk - u @ v.T)
    slack = 1.0 if method != "aca" else 10.0  # ACA's stopping rule is an estimate
    assert err <= slack * 1e-3 * np.linalg.norm(blk)
    u, v = comp(blk, hmat.Accuracy(atol=1e-4, norm="2"))
    assert np.linalg.norm(blk - u @ v.T, 2) <= slack * 1e-4 * 4


def test_accuracy_choose_rank_rules():
    s = np.array([4.0, 2.0, 1.0, 0.5, 0.0])
    err2 = np.append(s, 0.0)
    fro = np.sqrt(np.cumsum((s**2)[::-1])[::-1])
    errf = np.append(fro, 0.0)
    shape, dt = (5, 5), np.float64
    assert hmat.Accuracy(rank=2).choose_rank(err2, s[0], shape, dt) == 2
    assert hmat.Accuracy(rank=9).choose_rank(err2, s[0], shape, dt) == 4  # zero tail cut
    assert hmat.Accuracy(rtol=0.3, norm="2").choose_rank(err2, s[0], shape, dt) == 2
    assert hmat.Accuracy(atol=0.6, norm="2").choose_rank(err2, s[0], shape, dt) == 3
    assert hmat.Accuracy(rtol=0.3).choose_rank(errf, fro[0], shape, dt) == 2
    assert hmat.Accuracy(rtol=0.3, max_rank=1).choose_rank(errf, fro[0], shape, dt) == 1


def test_recompression_saves_storage_within_budget():
    i = np.arange(512)
    a = 1.0 / (1.0 + np.abs(i[:, None] - i[None, :]))
    H0 = hmat.compress(a, tol=1e-4, eta=4.0, leaf_size=16)
    H1 = hmat.compress(a, tol=1e-4, eta=4.0, leaf_size=16, recompress=True)
    assert H1.nbytes < H0.nbytes
    assert np.linalg.norm(a - H1.to_dense()) <= 1e-4 * np.linalg.norm(a)


def test_data_ordering_recovers_hidden_structure():
    """A smooth kernel whose rows and columns come in random order: in index order no block is
    low rank; data-driven clustering puts similar rows (and columns) together again, so the
    H-matrix is much smaller at the same certified accuracy."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=384), rng.uniform(size=384)
    a = 1.0 / (1.0 + 50.0 * np.abs(x[:, None] - y[None, :]))
    Hi = hmat.compress(a, tol=1e-4, adaptive=True, leaf_size=16)
    Hd = hmat.compress(a, tol=1e-4, adaptive=True, leaf_size=16, cluster="data")
    assert Hd.row_perm is not None and sorted(Hd.row_perm) == list(range(384))
    assert np.linalg.norm(a - Hd.to_dense()) <= 1e-4 * np.linalg.norm(a)
    v = rng.standard_normal(384)
    assert np.allclose(Hd @ v, Hd.to_dense() @ v)
    assert Hi.compression_ratio > 0.9
    assert Hd.compression_ratio < 0.5


def test_geometric_clustering_and_strong_admissibility():
    rng = np.random.default_rng(0)
    pts = rng.uniform(size=(400, 2))
    d = np.linalg.norm(pts[:, None] - pts[None, :], axis=-1)
    a = np.exp(-d)
    H = hmat.compress(a, tol=1e-6, cluster="geometric", row_coords=pts, col_coords=pts,
                      eta=2.0, leaf_size=16)
    assert H.row_perm is not None
    assert np.linalg.norm(a - H.to_dense()) <= 1e-6 * np.linalg.norm(a)
    H_index = hmat.compress(a, tol=1e-6, eta=2.0, leaf_size=16)  # points in random order
    assert H.compression_ratio < 0.8 * H_index.compression_ratio


def test_eta_controls_block_sizes():
    i = np.arange(256)
    a = 1.0 / (1.0 + np.abs(i[:, None] - i[None, :]))
    counts = [hmat.compress(a, rank=4, eta=eta, leaf_size=8).n_blocks for eta in (0.5, 1, 2, 4)]
    assert counts == sorted(counts, reverse=True)  # larger eta: fewer, larger blocks
    assert hmat.compress(a, rank=4, eta=0.0, leaf_size=8).ranks.size == 0  # nothing admissible


def test_cluster_trees_are_valid():
    rng = np.random.default_rng(0)
    trees = [hmat.cluster_index(101, 7), hmat.cluster_geometric(rng.uniform(size=(101, 3)), 7),
             hmat.cluster_data(rng.standard_normal((101, 20)), 7)]
    for tree in trees:
        assert sorted(tree.perm) == list(range(101))
        for node in range(tree.n_nodes):
            a, b = tree.children[node]
            if a < 0:
                assert tree.stop[node] - tree.start[node] <= 7
            else:
                assert tree.start[a] == tree.start[node] and tree.stop[b] == tree.stop[node]
                assert tree.stop[a] == tree.start[b]


def test_dtype_rules():
    a = np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32)
    H = hmat.compress(a, rank=3, leaf_size=8)
    assert H.dtype == np.float32
    assert (H @ np.ones(30, np.float32)).dtype == np.float32
    assert (H @ np.ones(30, np.float64)).dtype == np.float64
    assert (H @ np.ones(30, np.int64)).dtype == np.float64
    Hi = hmat.compress(np.arange(12).reshape(3, 4), rank=1)
    assert Hi.dtype == np.float64
    assert np.allclose(Hi.to_dense(), np.arange(12).reshape(3, 4))


def test_zero_matrix():
    H = hmat.compress(np.zeros((70, 50)), tol=1e-3, leaf_size=8)
    assert np.all(H @ np.ones(50) == 0)
    assert np.all(H.to_dense() == 0)


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 45)).astype(np.float32)
    H = hmat.compress(a, rank=4, leaf_size=8, cluster="data")
    path = tmp_path / "h.npz"
    H.save(path)
    H2 = hmat.load(path)
    assert H2.shape == H.shape and H2.dtype == H.dtype and H2.nbytes == H.nbytes
    assert np.array_equal(H2.to_dense(), H.to_dense())
    assert H2.info["method"] == "svd"


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        hmat.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        hmat.load(other)
    H = hmat.compress(np.eye(20), rank=1, leaf_size=4)
    good = tmp_path / "good.npz"
    H.save(good)
    with np.load(good) as f:
        arrays = dict(f.items())
    arrays["d_desc"] = arrays["d_desc"][:-1]  # drop a block: no longer tiles the matrix
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ValueError, match="tile"):
        hmat.load(tmp_path / "cut.npz")


def test_linear_operator():
    from scipy.sparse.linalg import svds

    rng = np.random.default_rng(0)
    a = rng.standard_normal((80, 60))
    H = hmat.compress(a, tol=1e-8, leaf_size=8)
    op = H.aslinearoperator()
    x = rng.standard_normal(60)
    assert np.allclose(op @ x, a @ x, atol=1e-6)
    assert np.allclose(op.T @ rng.standard_normal(80).reshape(-1), 0, atol=1e9)  # runs
    s = svds(op, k=3, return_singular_vectors=False, random_state=0)
    assert np.allclose(np.sort(s), np.sort(np.linalg.svd(a, compute_uv=False)[:3]), rtol=1e-6)


def test_repr_and_properties():
    a = np.random.default_rng(0).standard_normal((100, 120))
    H = hmat.compress(a, rank=5, leaf_size=16)
    text = repr(H)
    assert "(100, 120)" in text and "max_rank=5" in text and "% of dense" in text
    assert H.n_blocks == len(H.blocks())
    assert H.nbytes > H.lr_data.nbytes + H.d_data.nbytes  # index arrays are counted too
    assert 0 < H.compression_ratio == H.nbytes / (100 * 120 * 8)


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
        (dict(rank=3, leaf_size=0), ValueError, "leaf_size"),
        (dict(rank=3, method="lu"), ValueError, "method"),
        (dict(rank=3, norm="max"), ValueError, "norm"),
        (dict(rank=3, admissibility="strongest"), ValueError, "admissibility"),
        (dict(rank=3, cluster="random"), ValueError, "cluster"),
        (dict(rank=3, cluster="geometric"), ValueError, "row_coords"),
        (dict(rank=3, adaptive=True), ValueError, "tol"),
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


def test_bad_vectors():
    H = hmat.compress(np.ones((10, 8)), rank=1, leaf_size=2)
    with pytest.raises(ValueError, match="x has 7 rows"):
        H @ np.ones(7)
    with pytest.raises(ValueError, match="x has 10 rows"):
        H @ np.ones((10, 3))
    with pytest.raises(ValueError, match="y has 8 rows"):
        H.rmatvec(np.ones(8))
    with pytest.raises(ValueError, match="vector or a matrix"):
        H @ np.ones((8, 2, 2))
    with pytest.raises(TypeError, match="real"):
        H @ np.ones(8, dtype=complex)


def test_entry_function_errors():
    with pytest.raises(ValueError, match="shape"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), rank=2)
    with pytest.raises(ValueError, match="array"):
        hmat.compress(lambda r, c: np.ones((len(r), len(c))), shape=(8, 8), tol=0.1,
                      adaptive=True)
    with pytest.raises(ValueError, match="non-finite"):
        hmat.compress(lambda r, c: np.full((len(r), len(c)), np.nan), shape=(8, 8), rank=1,
                      leaf_size=2)


def test_plot_blocks_draws_ranks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = np.arange(256)
    a = 1.0 / (1.0 + np.abs(i[:, None] - i[None, :]))
    H = hmat.compress(a, tol=1e-6, leaf_size=16)
    ax = hmat.plot_blocks(H)
    texts = [t.get_text() for t in ax.texts]
    assert texts and all(t.isdigit() for t in texts)
    assert set(int(t) for t in texts) <= set(H.ranks.tolist())
    assert ax.get_xlabel() == "column index" and ax.get_ylabel() == "row index"
    assert len(ax.collections) == 2  # low-rank and dense patches
    plt.close(ax.figure)


def test_import_does_not_import_torch():
    code = "import sys, hmat; assert 'torch' not in sys.modules, 'hmat imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
