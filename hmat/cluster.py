"""Cluster trees: binary trees of contiguous ranges of a permuted index set.

Every node is a range ``[start, stop)`` of positions in the permuted order ``perm``, with the
bounding box of its points' coordinates (used by admissibility). Three ways to build one:

* :func:`cluster_index` halves the index range (cardinality), coordinates ``(i + 0.5) / n``;
* :func:`cluster_geometric` bisects given coordinates along the widest extent of the box;
* :func:`cluster_data` orders rows of a data matrix by principal direction, so that similar
  rows (neurons) sit together; positions in the new order become the coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClusterTree", "cluster_index", "cluster_geometric", "cluster_data"]


@dataclass(frozen=True, eq=False)
class ClusterTree:
    """A binary cluster tree stored in flat arrays (node 0 is the root)."""

    perm: np.ndarray  # perm[p] = original index at permuted position p
    start: np.ndarray  # first permuted position of each node
    stop: np.ndarray  # one past the last permuted position
    children: np.ndarray  # (nnodes, 2) child node ids, -1 for a leaf
    bmin: np.ndarray  # (nnodes, d) lower corner of the bounding box
    bmax: np.ndarray  # (nnodes, d) upper corner

    @property
    def size(self) -> int:
        return int(self.perm.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.start.shape[0])

    def is_leaf(self, node: int) -> bool:
        return self.children[node, 0] < 0

    def diam(self, node: int) -> float:
        return float(np.linalg.norm(self.bmax[node] - self.bmin[node]))

    def dist(self, node: int, other: ClusterTree, onode: int) -> float:
        """Euclidean distance between the bounding boxes of two clusters (0 if they overlap)."""
        gap = np.maximum(0.0, np.maximum(self.bmin[node] - other.bmax[onode],
                                         other.bmin[onode] - self.bmax[node]))
        return float(np.linalg.norm(gap))

    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.children[:, 0] < 0)

    def depth(self) -> int:
        depth = np.zeros(self.n_nodes, dtype=np.int64)
        for node in range(self.n_nodes):
            for c in self.children[node]:
                if c >= 0:
                    depth[c] = depth[node] + 1
        return int(depth.max())

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.perm, np.arange(self.size)))


def _check_leaf_size(leaf_size) -> int:
    if isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer)):
        raise TypeError(f"leaf_size must be an integer >= 1, got {leaf_size!r}")
    if leaf_size < 1:
        raise ValueError(f"leaf_size must be >= 1, got {leaf_size}")
    return int(leaf_size)


def _build(coords: np.ndarray, leaf_size: int, split) -> ClusterTree:
    """Generic recursive bisection; ``split(points_idx)`` returns the left part's mask."""
    n = coords.shape[0]
    perm = np.arange(n, dtype=np.int64)
    starts, stops, children, bmin, bmax = [], [], [], [], []

    def new_node(lo, hi):
        pts = coords[perm[lo:hi]]
        starts.append(lo)
        stops.append(hi)
        children.append([-1, -1])
        bmin.append(pts.min(axis=0))
        bmax.append(pts.max(axis=0))
        return len(starts) - 1

    stack = [new_node(0, n)]
    while stack:
        node = stack.pop()
        lo, hi = starts[node], stops[node]
        if hi - lo <= leaf_size:
            continue
        idx = perm[lo:hi]
        left = split(idx)
        nleft = int(left.sum())
        if nleft == 0 or nleft == hi - lo:  # degenerate split: fall back to halving
            left = np.zeros(hi - lo, dtype=bool)
            left[: (hi - lo) // 2] = True
            nleft = (hi - lo) // 2
        perm[lo:hi] = np.concatenate([idx[left], idx[~left]])
        a = new_node(lo, lo + nleft)
        b = new_node(lo + nleft, hi)
        children[node] = [a, b]
        stack.extend([b, a])
    return ClusterTree(
        perm=perm,
        start=np.asarray(starts, dtype=np.int64),
        stop=np.asarray(stops, dtype=np.int64),
        children=np.asarray(children, dtype=np.int64).reshape(-1, 2),
        bmin=np.asarray(bmin, dtype=np.float64).reshape(len(starts), -1),
        bmax=np.asarray(bmax, dtype=np.float64).reshape(len(starts), -1),
    )


def cluster_index(n: int, leaf_size: int = 32) -> ClusterTree:
    """Cardinality bisection of ``0..n-1`` (no permutation); coordinates ``(i + 0.5) / n``."""
    leaf_size = _check_leaf_size(leaf_size)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    coords = ((np.arange(n) + 0.5) / n)[:, None]

    def halve(idx):
        mask = np.zeros(idx.shape[0], dtype=bool)
        mask[: idx.shape[0] // 2] = True
        return mask

    return _build(coords, leaf_size, halve)


def cluster_geometric(coords, leaf_size: int = 32) -> ClusterTree:
    """Geometric bisection: split the bounding box at its midpoint along its widest extent."""
    leaf_size = _check_leaf_size(leaf_size)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 1:
        coords = coords[:, None]
    if coords.ndim != 2 or coords.shape[0] < 1:
        raise ValueError(f"coords must be an (n, d) array with n >= 1, got shape {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coords must be finite")

    def bisect(idx):
        pts = coords[idx]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        axis = int(np.argmax(hi - lo))
        return pts[:, axis] <= 0.5 * (lo[axis] + hi[axis])

    return _build(coords, leaf_size, bisect)


def _principal_direction(centred: np.ndarray, iters: int = 30) -> np.ndarray:
    """Leading right singular vector by power iteration (deterministic start, cheap)."""
    v = np.ones(centred.shape[1]) + np.arange(centred.shape[1]) / centred.shape[1]
    for _ in range(iters):
        w = centred.T @ (centred @ v)
        nrm = np.linalg.norm(w)
        if nrm == 0.0:
            break
        v = w / nrm
    return v


def cluster_data(features, leaf_size: int = 32) -> ClusterTree:
    """Data-driven ordering: recursive principal-direction bisection of the rows of ``features``.

    Rows with similar direction end up in the same cluster, so blocks of a weight matrix whose
    rows and columns are ordered this way are closer to low rank. The split is at the median of
    the projection (balanced tree). Positions in the resulting order serve as 1-D coordinates for
    admissibility, exactly as for :func:`cluster_index` on the permuted matrix.
    """
    leaf_size = _check_leaf_size(leaf_size)
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 1:
        raise ValueError(f"features must be a 2-D array with rows, got shape {feats.shape}")
    n = feats.shape[0]
    # Rows are compared by direction: normalise away each neuron's scale.
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = feats / np.where(norms > 0, norms, 1.0)

    def pca_split(idx):
        pts = unit[idx]
        centred = pts - pts.mean(axis=0)
        proj = centred @ _principal_direction(centred)
        order = np.argsort(proj, kind="stable")
        mask = np.zeros(idx.shape[0], dtype=bool)
        mask[order[: idx.shape[0] // 2]] = True
        return mask

    tree = _build(unit, leaf_size, pca_split)
    # Replace the feature-space boxes by 1-D positions in the new order.
    pos = (np.arange(n) + 0.5) / n
    bmin = pos[tree.start][:, None]
    bmax = pos[tree.stop - 1][:, None]
    return ClusterTree(tree.perm, tree.start, tree.stop, tree.children, bmin, bmax)
