"""Find the adaptive tolerance whose H-matrix fits a byte budget, without building many.

The adaptive build of :func:`hmat.compress` (``adaptive=True``, every block a candidate) plans
children first and keeps a block in low rank when the smallest rank meeting the block's share
``tol * ||A_b||_F`` of the budget stores fewer entries than its children (and than dense);
otherwise it splits the block, or stores it dense where splitting saves nothing. With truncated
SVD that decision depends only on each block's singular values, so one SVD
per node of the block tree (a few dozen for a hidden layer) predicts the stored entries for every
tolerance; the bisection over ``tol`` then costs nothing, and only the final H-matrix is built
(and its exact ``nbytes`` checked).
"""

from __future__ import annotations

import math

import numpy as np

from hmat.cluster import cluster_data, cluster_index

__all__ = ["AdaptivePlan"]


class AdaptivePlan:
    """Singular values of every block the adaptive build may visit, for one matrix."""

    def __init__(self, A: np.ndarray, leaf_size: int = 32, cluster: str = "index"):
        a = np.asarray(A, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got shape {a.shape}")
        m, n = a.shape
        if cluster == "index":
            rows, cols = cluster_index(m, leaf_size), cluster_index(n, leaf_size)
        elif cluster == "data":
            rows, cols = cluster_data(a, leaf_size), cluster_data(a.T, leaf_size)
        else:
            raise ValueError(f"the budget search supports cluster 'index' or 'data', got "
                             f"{cluster!r}")
        a = a[np.ix_(rows.perm, cols.perm)]
        self.itemsize = np.asarray(A).dtype.itemsize if np.asarray(A).dtype.kind == "f" else 8
        self.nodes = []  # (m, n, cap, tails (k -> Frobenius tail), norm, children ids, leafy)

        def visit(s, t):
            r0, r1, c0, c1 = rows.start[s], rows.stop[s], cols.start[t], cols.stop[t]
            blk = a[r0:r1, c0:c1]
            sv = np.linalg.svd(blk, compute_uv=False)
            tails = np.sqrt(np.maximum(np.cumsum((sv ** 2)[::-1])[::-1], 0.0))
            tails = np.append(tails, 0.0)
            bm, bn = blk.shape
            leafy = rows.is_leaf(s) and cols.is_leaf(t)
            idx = len(self.nodes)
            self.nodes.append([bm, bn, (bm * bn - 1) // (bm + bn), tails, tails[0], [], leafy])
            if not leafy:
                cs = [s] if rows.is_leaf(s) else list(rows.children[s])
                ct = [t] if cols.is_leaf(t) else list(cols.children[t])
                self.nodes[idx][5] = [visit(int(i), int(j)) for i in cs for j in ct]
            return idx

        visit(0, 0)

    def predict(self, tol: float) -> tuple[int, int, int]:
        """(stored entries, low-rank blocks, dense blocks) of the adaptive build at ``tol``:
        children first; a block is low rank at the smallest rank meeting its share when that
        stores fewer entries than both its children's best and its dense form, and dense (at
        any level) when its children would store no less than the dense block."""

        def best(idx):
            bm, bn, cap, tails, norm, kids, leafy = self.nodes[idx]
            if leafy:
                alt = (bm * bn, 0, 1)
            else:
                parts = [best(c) for c in kids]
                alt = tuple(int(sum(p[i] for p in parts)) for i in range(3))
                if alt[0] >= bm * bn:
                    alt = (bm * bn, 0, 1)
            if norm == 0.0:
                return (0, 1, 0)
            k = int(np.flatnonzero(tails <= tol * norm)[0])
            if k * (bm + bn) < alt[0]:
                return (k * (bm + bn), 1, 0)
            return alt

        return best(0)

    def predicted_nbytes(self, tol: float) -> int:
        """Factor and dense bytes plus the descriptor tables (the schedule is not included)."""
        entries, n_lr, n_d = self.predict(tol)
        return entries * self.itemsize + 8 * (7 * n_lr + 5 * n_d + 1)

    def tol_for_bytes(self, budget: int, lo: float = 1e-4, hi: float = 0.999,
                      iters: int = 40) -> float | None:
        """Smallest tolerance (bisection in log scale) whose predicted bytes fit ``budget``;
        None if even ``hi`` does not fit."""
        if self.predicted_nbytes(hi) > budget:
            return None
        if self.predicted_nbytes(lo) <= budget:
            return lo
        a, b = math.log(lo), math.log(hi)
        for _ in range(iters):
            mid = 0.5 * (a + b)
            if self.predicted_nbytes(math.exp(mid)) <= budget:
                b = mid
            else:
                a = mid
        return math.exp(b)
