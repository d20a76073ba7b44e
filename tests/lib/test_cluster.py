"""hmat.cluster: cluster trees and splitters, and every form of compress(cluster=...)."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.cluster import resolve_cluster
from hmat.examples import inverse_distance


def _assert_valid(tree, n, leaf):
    assert tree.size == n and sorted(tree.perm) == list(range(n))
    for node in range(tree.n_nodes):
        a, b = tree.children[node]
        if a < 0:
            assert tree.is_leaf(node)
            assert tree.stop[node] - tree.start[node] <= leaf
        else:
            assert tree.start[a] == tree.start[node] and tree.stop[b] == tree.stop[node]
            assert tree.stop[a] == tree.start[b]
            assert np.all(tree.bmin[a] >= tree.bmin[node] - 1e-12)
            assert np.all(tree.bmax[a] <= tree.bmax[node] + 1e-12)


def test_cluster_trees_are_valid():
    rng = np.random.default_rng(0)
    trees = [hmat.cluster_index(101, 7), hmat.cluster_geometric(rng.uniform(size=(101, 3)), 7),
             hmat.cluster_data(rng.standard_normal((101, 20)), 7),
             hmat.cluster_tree(rng.uniform(size=(101, 2)), hmat.PrincipalSplitter(), 7)]
    for tree in trees:
        _assert_valid(tree, 101, 7)
    idx = trees[0]
    assert idx.is_identity and len(idx.leaves()) >= 101 // 7 and idx.depth() >= 4
    assert idx.diam(0) == pytest.approx(1.0 - 1.0 / 101)


def test_splitters():
    pts = np.array([[0.0, 0.0], [10.0, 0.1], [1.0, 0.2], [9.0, 0.0]])
    np.testing.assert_array_equal(hmat.CardinalitySplitter()(pts), [True, True, False, False])
    np.testing.assert_array_equal(hmat.GeometricSplitter()(pts), [True, False, True, False])
    left = hmat.PrincipalSplitter()(pts)
    assert left.sum() == 2 and left[0] == left[2] and left[1] == left[3]


def test_degenerate_split_falls_back_to_halving():
    tree = hmat.cluster_tree(np.zeros((10, 1)), lambda p: np.ones(len(p), bool), 2)
    _assert_valid(tree, 10, 2)


def test_positions_replace_the_boxes():
    rng = np.random.default_rng(1)
    tree = hmat.cluster_tree(rng.standard_normal((40, 5)), hmat.PrincipalSplitter(), 4,
                             positions=True)
    assert tree.bmin.shape == (tree.n_nodes, 1)
    assert tree.bmin[0, 0] == pytest.approx(0.5 / 40) and tree.bmax[0, 0] == pytest.approx(
        39.5 / 40)


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


def test_geometric_clustering():
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


# ------------------------------------------------------------------------------ cluster= forms
def _same(H1, H2):
    np.testing.assert_array_equal(H1.lr_desc, H2.lr_desc)
    np.testing.assert_array_equal(H1.d_desc, H2.d_desc)
    for p1, p2 in ((H1.row_perm, H2.row_perm), (H1.col_perm, H2.col_perm)):
        assert (p1 is None) == (p2 is None) and (p1 is None or np.array_equal(p1, p2))
    np.testing.assert_array_equal(H1.to_dense(), H2.to_dense())


def test_cluster_tree_equals_the_name():
    a = inverse_distance(150)
    H = hmat.compress(a, rank=4, leaf_size=10)
    _same(hmat.compress(a, rank=4, leaf_size=10, cluster=hmat.cluster_index(150, 10)), H)
    # the tree decides the partition, not leaf_size
    _same(hmat.compress(a, rank=4, leaf_size=99, cluster=hmat.cluster_index(150, 10)), H)
    Hd = hmat.compress(a, rank=4, leaf_size=10, cluster="data")
    tree = hmat.cluster_data(a, 10)
    _same(hmat.compress(a, rank=4, leaf_size=10, cluster=tree), Hd)


def test_cluster_pair_equals_the_name_for_rectangular_matrices():
    rng = np.random.default_rng(0)
    b = rng.standard_normal((60, 40)) + np.outer(np.arange(60), np.ones(40))
    _same(hmat.compress(b, rank=3, leaf_size=8,
                        cluster=(hmat.cluster_index(60, 8), hmat.cluster_index(40, 8))),
          hmat.compress(b, rank=3, leaf_size=8))
    _same(hmat.compress(b, tol=0.1, adaptive=True, leaf_size=8,
                        cluster=(hmat.cluster_data(b, 8), hmat.cluster_data(b.T, 8))),
          hmat.compress(b, tol=0.1, adaptive=True, leaf_size=8, cluster="data"))
    # a pair may mix a tree and a name
    _same(hmat.compress(b, rank=3, leaf_size=8, cluster=(hmat.cluster_index(60, 8), "index")),
          hmat.compress(b, rank=3, leaf_size=8))


def test_splitter_callable_is_called_and_equals_the_name():
    a = inverse_distance(120)
    calls = []

    def halve(points):
        calls.append(len(points))
        return hmat.CardinalitySplitter()(points)

    H = hmat.compress(a, rank=3, leaf_size=8, cluster=halve)
    assert calls and calls[0] == 120 and max(calls) == 120 and min(calls) > 8
    _same(H, hmat.compress(a, rank=3, leaf_size=8))
    _same(hmat.compress(a, rank=3, leaf_size=8, cluster=hmat.CardinalitySplitter()), H)
    # with coordinates the splitter sees them: the geometric splitter equals "geometric"
    rng = np.random.default_rng(3)
    pts = rng.uniform(size=(120, 2))
    _same(hmat.compress(a, rank=3, leaf_size=8, cluster=hmat.GeometricSplitter(),
                        row_coords=pts, col_coords=pts),
          hmat.compress(a, rank=3, leaf_size=8, cluster="geometric", row_coords=pts,
                        col_coords=pts))


def test_splitter_reorders_like_a_custom_tree():
    """A splitter that reverses the order gives a permuted H-matrix that is still exact in the
    original order."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((50, 50))

    def by_first_feature(points):
        order = np.argsort(points[:, 0], kind="stable")
        mask = np.zeros(len(points), bool)
        mask[order[: len(points) // 2]] = True
        return mask

    H = hmat.compress(a, tol=1e-12, leaf_size=5, cluster=by_first_feature)
    assert H.row_perm is not None
    np.testing.assert_allclose(H.to_dense(), a, atol=1e-10)
    x = rng.standard_normal(50)
    np.testing.assert_allclose(H @ x, a @ x, atol=1e-10)


@pytest.mark.parametrize(
    "cluster, match",
    [
        (hmat.cluster_index(60, 8), "square matrix only"),
        ((hmat.cluster_index(61, 8), hmat.cluster_index(40, 8)), "row cluster tree has 61"),
        ((hmat.cluster_index(60, 8), hmat.cluster_index(41, 8)), "col cluster tree has 41"),
        (lambda p: np.ones(3, bool), "boolean mask of 60"),
        (42, "cluster must be"),
    ],
)
def test_bad_cluster_arguments(cluster, match):
    b = np.ones((60, 40))
    with pytest.raises(ValueError, match=match):
        hmat.compress(b, rank=2, leaf_size=8, cluster=cluster)


def test_square_tree_of_the_wrong_size():
    with pytest.raises(ValueError, match="row cluster tree has 30 indices"):
        hmat.compress(np.ones((40, 40)), rank=2, cluster=hmat.cluster_index(30, 8))


def test_entry_functions_and_cluster():
    f = lambda r, c: np.ones((len(r), len(c)))  # noqa: E731
    with pytest.raises(ValueError, match="splitter needs row_coords"):
        hmat.compress(f, shape=(20, 20), rank=1, cluster=hmat.PrincipalSplitter())
    with pytest.raises(ValueError, match="'data' needs the matrix"):
        hmat.compress(f, shape=(20, 20), rank=1, cluster="data")
    pts = np.linspace(0, 1, 20)
    H = hmat.compress(f, shape=(20, 20), rank=1, leaf_size=4, cluster=hmat.GeometricSplitter(),
                      row_coords=pts, col_coords=pts)
    np.testing.assert_allclose(H.to_dense(), np.ones((20, 20)))


def test_resolve_cluster_and_tree_errors():
    assert resolve_cluster("index", 10, 3).size == 10
    with pytest.raises(ValueError, match="features"):
        hmat.cluster_data(np.ones(5))
    with pytest.raises(ValueError, match="n must be"):
        hmat.cluster_index(0)
    with pytest.raises(ValueError, match="leaf_size"):
        hmat.cluster_index(10, 0)
    with pytest.raises(TypeError, match="leaf_size"):
        hmat.cluster_index(10, 2.5)
    with pytest.raises(TypeError, match="splitter"):
        hmat.cluster_tree(np.ones((4, 1)), "geometric")
    with pytest.raises(ValueError, match="finite"):
        hmat.cluster_geometric(np.array([[0.0], [np.nan]]))
