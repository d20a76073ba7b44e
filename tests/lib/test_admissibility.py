"""hmat.admissibility: strong (eta), weak and all, as callables and through compress."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.admissibility import make_admissibility
from hmat.examples import inverse_distance


def test_strong_rule_on_two_points_sets():
    rows = hmat.cluster_geometric(np.array([[0.0], [1.0]]), 1)  # root [0, 1], leaves 0 and 1
    cols = hmat.cluster_geometric(np.array([[3.0], [4.0]]), 1)  # root [3, 4]
    # diam 1, dist 2: admissible for eta >= 0.5
    assert hmat.StrongAdmissibility(0.5)(rows, 0, cols, 0)
    assert not hmat.StrongAdmissibility(0.49)(rows, 0, cols, 0)
    assert hmat.WeakAdmissibility()(rows, 0, cols, 0)
    assert not hmat.WeakAdmissibility()(rows, 0, rows, 0)  # a cluster with itself overlaps
    assert not hmat.StrongAdmissibility(1e9)(rows, 0, rows, 0)
    assert hmat.AllAdmissible()(rows, 0, rows, 0)


def test_eta_controls_block_sizes():
    a = inverse_distance(256)
    counts = [hmat.compress(a, rank=4, eta=eta, leaf_size=8).n_blocks for eta in (0.5, 1, 2, 4)]
    assert counts == sorted(counts, reverse=True)  # larger eta: fewer, larger blocks
    assert hmat.compress(a, rank=4, eta=0.0, leaf_size=8).ranks.size == 0  # nothing admissible


def test_weak_admissibility_is_hodlr():
    """Weak admissibility: every off-diagonal block of the index tree is low rank at once."""
    H = hmat.compress(inverse_distance(128), rank=4, leaf_size=16, admissibility="weak")
    for b in H.blocks():
        if b.kind == "dense":
            assert b.row_start == b.col_start and b.row_stop - b.row_start == 16
    assert sum(b.kind == "lowrank" for b in H.blocks()) == 2 + 4 + 8  # 3 levels above leaves


def test_all_admissible_and_callable():
    a = inverse_distance(64)
    H = hmat.compress(a, rank=64, admissibility="all", leaf_size=8)
    assert H.n_blocks == 1  # the root is admissible; at full rank it is stored dense
    seen = []

    def never(rows, s, cols, t):
        seen.append((s, t))
        return False

    Hn = hmat.compress(a, rank=2, admissibility=never, leaf_size=16)
    assert seen and Hn.ranks.size == 0
    np.testing.assert_array_equal(Hn.to_dense(), a)


def test_make_admissibility():
    assert make_admissibility("strong", None) == hmat.StrongAdmissibility(1.0)
    assert make_admissibility("strong", 2.0) == hmat.StrongAdmissibility(2.0)
    assert isinstance(make_admissibility("weak", None), hmat.WeakAdmissibility)
    assert isinstance(make_admissibility("all", None), hmat.AllAdmissible)
    with pytest.raises(ValueError, match="admissibility"):
        make_admissibility("strongest", None)
    with pytest.raises(ValueError, match="eta"):
        hmat.StrongAdmissibility(float("inf"))
    with pytest.raises(TypeError, match="eta"):
        hmat.StrongAdmissibility("1")
