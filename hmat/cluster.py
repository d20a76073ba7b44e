"""Cluster trees: binary trees of contiguous ranges of a permuted index set.

Every node is a range ``[start, stop)`` of positions in the permuted order ``perm``, with the
bounding box of its points' coordinates (used by admissibility). :func:`cluster_tree` builds one
from points and a splitter (a callable ``points -> left mask``); three ready-made trees:

* :func:`cluster_index` halves the index range (cardinality), coordinates ``(i + 0.5) / n``;
* :func:`cluster_geometric` bisects given coordinates along the widest extent of the box;
* :func:`cluster_data` orders rows of a data matrix by principal direction, so that similar
  rows (neurons) sit together; positions in the new order become the coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ClusterTree", "Splitter", "cluster_tree", "cluster_index", "cluster_geometric",
           "cluster_data", "CardinalitySplitter", "GeometricSplitter", "PrincipalSplitter",
           "resolve_cluster"]

#: ``splitter(points) -> mask``: which of a cluster's points (rows of an (k, d) array) go left
Splitter = Callable[[np.ndarray], np.ndarray]


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


def check_leaf_size(leaf_size) -> int:
    """``leaf_size`` as an int, or a clear error (an integer >= 1)."""
    if isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer)):
        raise TypeError(f"leaf_size must be an integer >= 1, got {leaf_size!r}")
    if leaf_size < 1:
        raise ValueError(f"leaf_size must be >= 1, got {leaf_size}")
    return int(leaf_size)


def _build(coords: np.ndarray, leaf_size: int, split) -> ClusterTree:
    """Generic recursive bisection; ``split(points)`` returns the left part's boolean mask."""
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
        left = np.asarray(split(coords[idx]), dtype=bool)
        if left.shape != (hi - lo,):
            raise ValueError(f"the splitter must return a boolean mask of {hi - lo} entries, "
                             f"got shape {left.shape}")
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


@dataclass(frozen=True)
class CardinalitySplitter:
    """Halve the cluster in its current order (no reordering)."""

    def __call__(self, points: np.ndarray) -> np.ndarray:
        mask = np.zeros(points.shape[0], dtype=bool)
        mask[: points.shape[0] // 2] = True
        return mask


@dataclass(frozen=True)
class GeometricSplitter:
    """Split the bounding box at its midpoint along its widest extent."""

    def __call__(self, points: np.ndarray) -> np.ndarray:
        lo, hi = points.min(axis=0), points.max(axis=0)
        axis = int(np.argmax(hi - lo))
        return points[:, axis] <= 0.5 * (lo[axis] + hi[axis])


@dataclass(frozen=True)
class PrincipalSplitter:
    """Split at the median of the projection on the principal direction (balanced): rows with
    a similar direction (similar neurons) end up in the same cluster."""

    def __call__(self, points: np.ndarray) -> np.ndarray:
        centred = points - points.mean(axis=0)
        proj = centred @ _principal_direction(centred)
        order = np.argsort(proj, kind="stable")
        mask = np.zeros(points.shape[0], dtype=bool)
        mask[order[: points.shape[0] // 2]] = True
        return mask


def _as_points(coords, name: str = "coords") -> np.ndarray:
    pts = np.asarray(coords, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[:, None]
    if pts.ndim != 2 or pts.shape[0] < 1:
        raise ValueError(f"{name} must be an (n, d) array with n >= 1, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} must be finite")
    return pts


def cluster_tree(points, splitter: Splitter, leaf_size: int = 32, *,
                 positions: bool = False) -> ClusterTree:
    """A cluster tree of ``points`` (n, d) by recursive bisection with ``splitter(points) ->
    left mask``, as HMatrices.jl's ``ClusterTree(points, splitter)``. With ``positions``, the
    bounding boxes become 1-D positions in the new order (for points without geometry, such as
    the rows of a weight matrix: admissibility then measures distance in the cluster order)."""
    leaf_size = check_leaf_size(leaf_size)
    if not callable(splitter):
        raise TypeError(f"splitter must be a callable points -> mask, got {splitter!r}")
    pts = _as_points(points, "points")
    tree = _build(pts, leaf_size, splitter)
    if not positions:
        return tree
    pos = (np.arange(pts.shape[0]) + 0.5) / pts.shape[0]
    return ClusterTree(tree.perm, tree.start, tree.stop, tree.children,
                       pos[tree.start][:, None], pos[tree.stop - 1][:, None])


def cluster_index(n: int, leaf_size: int = 32) -> ClusterTree:
    """Cardinality bisection of ``0..n-1`` (no permutation); coordinates ``(i + 0.5) / n``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return cluster_tree(((np.arange(n) + 0.5) / n)[:, None], CardinalitySplitter(), leaf_size)


def cluster_geometric(coords, leaf_size: int = 32) -> ClusterTree:
    """Geometric bisection: split the bounding box at its midpoint along its widest extent."""
    return cluster_tree(_as_points(coords), GeometricSplitter(), leaf_size)


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

    Rows are compared by direction (each is normalised), so blocks of a weight matrix whose rows
    and columns are ordered this way are closer to low rank. Positions in the resulting order
    serve as 1-D coordinates for admissibility, as for :func:`cluster_index`.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 1:
        raise ValueError(f"features must be a 2-D array with rows, got shape {feats.shape}")
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    unit = feats / np.where(norms > 0, norms, 1.0)
    return cluster_tree(unit, PrincipalSplitter(), leaf_size, positions=True)


def resolve_cluster(cluster, n: int, leaf_size: int, coords=None, features=None,
                    name: str = "row") -> ClusterTree:
    """The ``cluster=`` argument of :func:`hmat.compress` for one side of the matrix: a name
    (``"index"``, ``"geometric"``, ``"data"``), a :class:`ClusterTree` of ``n`` indices, or a
    splitter callable (applied to ``{name}_coords`` if given, else to the matrix' {name}s)."""
    if isinstance(cluster, ClusterTree):
        if cluster.size != n:
            raise ValueError(f"the {name} cluster tree has {cluster.size} indices, the matrix "
                             f"has {n} {name}s")
        return cluster
    if coords is not None:
        coords = _as_points(coords, f"{name}_coords")
        if coords.shape[0] != n:
            raise ValueError(
                f"{name}_coords has {coords.shape[0]} points, the matrix has {n} {name}s")
    if callable(cluster) and not isinstance(cluster, str):
        if coords is not None:
            return cluster_tree(coords, cluster, leaf_size)
        if features is None:
            raise ValueError(f"a splitter needs {name}_coords or the matrix as an array")
        return cluster_tree(features, cluster, leaf_size, positions=True)
    if cluster == "index":
        return cluster_index(n, leaf_size)
    if cluster == "geometric":
        if coords is None:
            raise ValueError(f"cluster='geometric' needs {name}_coords (an ({n}, d) array)")
        return cluster_geometric(coords, leaf_size)
    if cluster == "data":
        if features is None:
            raise ValueError("cluster='data' needs the matrix as an array, not an entry function")
        return cluster_data(features, leaf_size)
    raise ValueError("cluster must be 'index', 'geometric', 'data', a ClusterTree, a (rows, "
                     f"cols) pair of them, or a splitter callable; got {cluster!r}")
