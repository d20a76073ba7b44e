"""hmat.blocktree: the block partition, the adaptive rule (choose, lowrank_cap), the spectral
plan (prediction of the adaptive build, byte budgets) and the packing of the leaves."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat import blocktree
from hmat._layout import descriptor_nbytes
from hmat.cluster import resolve_cluster
from hmat.examples import inverse_distance


def _smooth_plus_noise(m=64, n=48, seed=0):
    """The old nn test's layer weight: some blocks are low rank, some are not."""
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    smooth = 1.0 / (1.0 + np.abs(i / m - j / n) * 10)
    return smooth + 0.01 * np.random.default_rng(seed).standard_normal((m, n))


def _plan(w, leaf, cluster):
    rows = resolve_cluster(cluster, w.shape[0], leaf, features=w, name="row")
    cols = resolve_cluster(cluster, w.shape[1], leaf, features=w.T, name="col")
    a = np.ascontiguousarray(w[np.ix_(rows.perm, cols.perm)])
    return blocktree.SpectralPlan(blocktree.Blocks(rows, cols, a.dtype, a=a),
                                  hmat.AllAdmissible())


def test_blocks_tile_the_matrix_once():
    a = np.random.default_rng(1).standard_normal((37, 53))
    for adm in ("strong", "weak"):
        H = hmat.compress(a, rank=2, leaf_size=4, admissibility=adm)
        cover = np.zeros(a.shape, dtype=int)
        for b in H.blocks():
            cover[b.row_start:b.row_stop, b.col_start:b.col_stop] += 1
        assert np.all(cover == 1)


def test_lowrank_cap():
    for bm, bn in ((8, 8), (5, 13), (1, 1), (32, 2)):
        below = bm * bn
        k = blocktree.lowrank_cap(bm, bn, below)
        assert k == (bm * bn - 1) // (bm + bn)
        assert k * (bm + bn) < below and (k + 1) * (bm + bn) >= below
    assert blocktree.lowrank_cap(4, 4, 0) == 0


def test_choose_is_the_adaptive_rule():
    # leaf 8 x 8: low rank 3 stores 48 < 64
    assert blocktree.choose(8, 8, None, 3) == ("lowrank", 48)
    assert blocktree.choose(8, 8, None, 4) == ("dense", 64)  # 64 is not < 64
    assert blocktree.choose(8, 8, None, 0) == ("zero", 0)
    assert blocktree.choose(8, 8, None, None) == ("dense", 64)
    # children storing 40 beat dense; low rank must beat the children
    assert blocktree.choose(8, 8, 40, 2) == ("lowrank", 32)
    assert blocktree.choose(8, 8, 40, 3) == ("split", 40)
    assert blocktree.choose(8, 8, 70, None) == ("dense", 64)  # splitting saves nothing


@pytest.mark.parametrize("cluster", ["index", "data"])
def test_spectral_plan_predicts_the_adaptive_build(cluster):
    """The plan's prediction from singular values equals exactly the stored entries and block
    counts of compress(..., adaptive=True): the two never drift apart."""
    for w in (_smooth_plus_noise(), inverse_distance(96)[:, :80]):
        plan = _plan(w, 8, cluster)
        kinds = set()
        for tol in (1e-3, 0.01, 0.05, 0.2, 0.5, 0.9):
            H = hmat.compress(w, tol=tol, adaptive=True, leaf_size=8, cluster=cluster)
            got = plan.predict(tol)
            assert got == (H.n_entries, len(H.lr_desc), len(H.d_desc)), (tol, got)
            kinds.add((len(H.lr_desc) > 0, len(H.d_desc) > 0))
            assert plan.predicted_nbytes(tol) == (H.n_entries * H.dtype.itemsize
                                                  + descriptor_nbytes(len(H.lr_desc),
                                                                      len(H.d_desc)))
            assert plan.predicted_nbytes(tol) <= H.nbytes
        assert len(kinds) > 1  # the tolerances cover different partitions


def test_spectral_plan_tol_for_bytes():
    w = inverse_distance(128)
    plan = _plan(w, 8, "index")
    budget = int(0.3 * w.nbytes)
    tol = plan.tol_for_bytes(budget)
    assert tol is not None and plan.predicted_nbytes(tol) <= budget
    assert plan.predicted_nbytes(tol * 0.9) > budget  # the smallest tolerance that fits
    assert plan.tol_for_bytes(10) is None
    assert plan.tol_for_bytes(10 * w.nbytes) == 1e-4  # everything fits: the lower end


def test_build_fixed_and_error2_with_public_pieces():
    """Blocks -> build_fixed -> to_hmatrix gives compress' H-matrix; error2 is its error."""
    a = inverse_distance(100)
    rows = cols = hmat.cluster_index(100, 10)
    src = blocktree.Blocks(rows, cols, a.dtype, a=a)
    root = blocktree.build_fixed(src, hmat.TruncatedSVD(), hmat.Accuracy(rank=3),
                                 hmat.StrongAdmissibility(1.0))
    H = blocktree.to_hmatrix(root, src, a.shape)
    H0 = hmat.compress(a, rank=3, leaf_size=10)
    np.testing.assert_array_equal(H.to_dense(), H0.to_dense())
    assert root.entries() == H.n_entries
    assert len(list(root.leaves())) == H.n_blocks
    assert np.sqrt(blocktree.error2(root)) == pytest.approx(np.linalg.norm(a - H.to_dense()),
                                                            rel=1e-6)


def test_build_adaptive_with_aca_meets_the_budget():
    a = inverse_distance(128)
    rows = cols = hmat.cluster_index(128, 8)
    src = blocktree.Blocks(rows, cols, a.dtype, a=a)
    root = blocktree.build_adaptive(src, hmat.ACA(), 1e-5, hmat.AllAdmissible())
    H = blocktree.to_hmatrix(root, src, a.shape)
    assert np.linalg.norm(a - H.to_dense()) <= 1e-5 * np.linalg.norm(a)
    assert H.n_entries < a.size


def test_recompress_merges_children():
    a = inverse_distance(128)
    rows = cols = hmat.cluster_index(128, 8)
    src = blocktree.Blocks(rows, cols, a.dtype, a=a)
    root = blocktree.build_fixed(src, hmat.TruncatedSVD(), hmat.Accuracy(rtol=1e-4),
                                 hmat.StrongAdmissibility(4.0))
    before, n_before = root.entries(), len(list(root.leaves()))
    blocktree.recompress(root, src, hmat.TruncatedSVD(), 1e-4)
    assert root.entries() < before and len(list(root.leaves())) < n_before
    assert np.sqrt(blocktree.error2(root)) <= 1e-4 * np.linalg.norm(a)
