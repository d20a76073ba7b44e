"""hmat.hmatrix.HMatrix: products (H @ x, x @ H, H.T), properties, from_blocks, to_dense,
block access, the linear operator and bad vectors."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.examples import inverse_distance

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module", params=["index", "data"])
def H(request):
    a = inverse_distance(90)[:, :70] + 0.01 * np.random.default_rng(0).standard_normal((90, 70))
    return hmat.compress(a, rank=4, leaf_size=8, cluster=request.param)


def test_x_at_H_equals_dense(H):
    """numpy hands ``x @ H`` over to HMatrix (``__array_ufunc__ = None``)."""
    dense = H.to_dense()
    x = RNG.standard_normal(90)
    X = RNG.standard_normal((5, 90))
    y = x @ H
    assert isinstance(y, np.ndarray) and y.shape == (70,)
    np.testing.assert_allclose(y, x @ dense, atol=1e-12)
    np.testing.assert_allclose(X @ H, X @ dense, atol=1e-12)
    assert (X @ H).shape == (5, 70)
    np.testing.assert_allclose(x.tolist() @ H, x @ dense, atol=1e-12)  # a list, too
    np.testing.assert_allclose(np.float32(2.0) * (x.astype(np.float32) @ H),
                               2 * x @ dense, rtol=1e-4, atol=1e-4)


def test_transpose_products(H):
    dense = H.to_dense()
    y = RNG.standard_normal(90)
    Y = RNG.standard_normal((90, 3))
    assert H.T.shape == (70, 90) and H.T.dtype == H.dtype
    np.testing.assert_allclose(H.T @ y, dense.T @ y, atol=1e-12)
    np.testing.assert_allclose(H.T @ Y, dense.T @ Y, atol=1e-12)
    np.testing.assert_allclose(H.rmatvec(Y), dense.T @ Y, atol=1e-12)
    x = RNG.standard_normal(70)
    X = RNG.standard_normal((4, 70))
    np.testing.assert_allclose(x @ H.T, x @ dense.T, atol=1e-12)  # x @ H.T = H @ x
    np.testing.assert_allclose(X @ H.T, X @ dense.T, atol=1e-12)
    assert (X @ H.T).shape == (4, 90)


def test_matvec_matmat_aliases(H):
    X = RNG.standard_normal((70, 3))
    np.testing.assert_array_equal(H.matvec(X), H @ X)
    np.testing.assert_array_equal(H.matmat(X), H @ X)


def test_from_blocks_round_trip(H):
    """The leaves of an H-matrix (block_form / lowrank_factors / dense_block) build it again."""
    lowrank = [(r0, c0, *H.lowrank_factors(b)) for b, (r0, _, c0, _, _, _)
               in enumerate(H.lr_desc)]
    dense = [(r0, c0, H.dense_block(b)) for b, (r0, _, c0, _, _) in enumerate(H.d_desc)]
    H2 = hmat.HMatrix.from_blocks(H.shape, lowrank, dense, row_perm=H.row_perm,
                                  col_perm=H.col_perm, info={"k": 1})
    np.testing.assert_array_equal(H2.to_dense(), H.to_dense())
    assert H2.nbytes == H.nbytes and H2.dtype == H.dtype and H2.info == {"k": 1}
    for got, want in zip(H2.block_form(), H.block_form(), strict=True):
        np.testing.assert_array_equal(got, want)
    H32 = hmat.HMatrix.from_blocks(H.shape, lowrank, dense, row_perm=H.row_perm,
                                   col_perm=H.col_perm, dtype=np.float32)
    assert H32.dtype == np.float32
    np.testing.assert_allclose(H32.to_dense(), H.to_dense(), atol=1e-5)


def test_from_blocks_by_hand():
    u, vt = RNG.standard_normal((3, 1)), RNG.standard_normal((1, 2))
    d1, d2 = RNG.standard_normal((3, 3)), RNG.standard_normal((2, 5))
    H = hmat.HMatrix.from_blocks((5, 5), [(0, 3, u, vt)], [(0, 0, d1), (3, 0, d2)])
    ref = np.block([[d1, u @ vt], [d2]])
    np.testing.assert_allclose(H.to_dense(), ref)
    np.testing.assert_allclose(H @ np.arange(5.0), ref @ np.arange(5.0))
    assert H.n_blocks == 3 and H.ranks.tolist() == [1] and H.max_rank == 1
    # permutations: position p holds original row row_perm[p]
    rp = np.array([4, 0, 1, 2, 3])
    Hp = hmat.HMatrix.from_blocks((5, 5), [(0, 3, u, vt)], [(0, 0, d1), (3, 0, d2)],
                                  row_perm=rp)
    out = np.empty_like(ref)
    out[rp] = ref
    np.testing.assert_allclose(Hp.to_dense(), out)
    assert hmat.HMatrix.from_blocks((2, 2), [], [(0, 0, np.eye(2))]).dtype == np.float64


@pytest.mark.parametrize(
    "lowrank, dense",
    [
        ([], [(0, 0, np.ones((2, 4)))]),  # a gap
        ([], [(0, 0, np.ones((4, 4))), (0, 0, np.ones((1, 1)))]),  # an overlap
        ([], [(0, 0, np.ones((4, 5)))]),  # outside the matrix
        ([(0, 0, np.ones((2, 1)), np.ones((1, 4)))], [(1, 0, np.ones((3, 4)))]),  # overlap
    ],
)
def test_from_blocks_that_do_not_tile(lowrank, dense):
    with pytest.raises(ValueError, match="do not tile"):
        hmat.HMatrix.from_blocks((4, 4), lowrank, dense)


def test_from_blocks_bad_factors_and_perms():
    with pytest.raises(ValueError, match="U is"):
        hmat.HMatrix.from_blocks((2, 4), [(0, 0, np.ones((2, 1)), np.ones((2, 4)))], [])
    with pytest.raises(ValueError, match="do not tile"):
        hmat.HMatrix.from_blocks((2, 2), [], [(0, 0, np.eye(2))], row_perm=[0, 0])
    with pytest.raises(TypeError, match="floating"):
        hmat.HMatrix((1, 1), np.zeros((0, 6)), np.zeros(0, np.int64), [[0, 1, 0, 1, 0]],
                     np.ones(1, np.int64))


def test_repr_and_properties():
    a = np.random.default_rng(0).standard_normal((100, 120))
    H = hmat.compress(a, rank=5, leaf_size=16)
    text = repr(H)
    assert "(100, 120)" in text and "max_rank=5" in text and "% of dense" in text
    assert H.n_blocks == len(H.blocks()) == len(H.lr_desc) + len(H.d_desc)
    assert H.nbytes > H.lr_data.nbytes + H.d_data.nbytes  # index arrays are counted too
    assert 0 < H.compression_ratio == H.nbytes / (100 * 120 * 8)
    assert H.dense_nbytes == 100 * 120 * 8 and H.ndim == 2
    assert H.ranks.tolist() == [b.rank for b in H.blocks() if b.kind == "lowrank"]
    assert H.max_rank == 5
    assert {b.kind for b in H.blocks()} == {"lowrank", "dense"}
    assert all(b.rank == -1 for b in H.blocks() if b.kind == "dense")


def test_to_dense_and_block_access():
    a = inverse_distance(64)
    H = hmat.compress(a, rank=3, leaf_size=8)
    dense = H.to_dense()
    for b, (r0, m, c0, n, _, _) in enumerate(H.lr_desc):
        u, vt = H.lowrank_factors(b)
        np.testing.assert_allclose(u @ vt, dense[r0:r0 + m, c0:c0 + n], atol=1e-14)
    for b, (r0, m, c0, n, _) in enumerate(H.d_desc):
        np.testing.assert_array_equal(H.dense_block(b), a[r0:r0 + m, c0:c0 + n])


def test_linear_operator():
    from scipy.sparse.linalg import svds

    rng = np.random.default_rng(0)
    a = rng.standard_normal((80, 60))
    H = hmat.compress(a, tol=1e-8, leaf_size=8)
    op = H.aslinearoperator()
    assert op.shape == (80, 60) and op.dtype == H.dtype
    x = rng.standard_normal(60)
    y = rng.standard_normal(80)
    assert np.allclose(op @ x, a @ x, atol=1e-6)
    assert np.allclose(op.T @ y, a.T @ y, atol=1e-6)
    assert np.allclose(op.matmat(rng.standard_normal((60, 2))).shape, (80, 2))
    s = svds(op, k=3, return_singular_vectors=False, random_state=0)
    assert np.allclose(np.sort(s), np.sort(np.linalg.svd(a, compute_uv=False)[:3]), rtol=1e-6)


def test_bad_vectors():
    H = hmat.compress(np.ones((10, 8)), rank=1, leaf_size=2)
    with pytest.raises(ValueError, match="x has 7 rows"):
        H @ np.ones(7)
    with pytest.raises(ValueError, match="x has 10 rows"):
        H @ np.ones((10, 3))
    with pytest.raises(ValueError, match="y has 8 rows"):
        H.rmatvec(np.ones(8))
    with pytest.raises(ValueError, match="y has 8 rows"):
        np.ones(8) @ H
    with pytest.raises(ValueError, match="y has 8 rows"):
        H.T @ np.ones(8)
    with pytest.raises(ValueError, match="x has 10 rows"):
        np.ones(10) @ H.T
    with pytest.raises(ValueError, match="vector or a matrix"):
        H @ np.ones((8, 2, 2))
    with pytest.raises(TypeError, match="real"):
        H @ np.ones(8, dtype=complex)
    with pytest.raises(TypeError, match="real"):
        np.ones(10, dtype=complex) @ H
