"""hmat.plot.plot_blocks: the thesis' Fig. 1 style block plot."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.examples import inverse_distance

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def test_plot_blocks_draws_ranks():
    H = hmat.compress(inverse_distance(256), tol=1e-6, leaf_size=16)
    ax = hmat.plot_blocks(H)
    texts = [t.get_text() for t in ax.texts]
    assert texts and all(t.isdigit() for t in texts)
    assert set(int(t) for t in texts) <= set(H.ranks.tolist())
    assert ax.get_xlabel() == "column index" and ax.get_ylabel() == "row index"
    assert len(ax.collections) == 2  # low-rank and dense patches
    plt.close(ax.figure)


def test_plot_options_and_permuted_axes():
    a = np.random.default_rng(0).standard_normal((60, 40))
    H = hmat.compress(a, rank=2, leaf_size=8, cluster="data")
    fig, ax = plt.subplots()
    out = hmat.plot_blocks(H, ax=ax, ranks=False, title="t")
    assert out is ax and not ax.texts and ax.get_title() == "t"
    assert ax.get_xlabel() == "column index (cluster order)"
    assert ax.get_xlim() == (0, 40) and ax.get_ylim() == (60, 0)  # row 0 at the top
    plt.close(fig)
    ax = hmat.plot_blocks(hmat.compress(np.eye(4), rank=1, leaf_size=4))  # one dense block
    assert len(ax.collections) == 1
    plt.close(ax.figure)
