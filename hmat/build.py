"""Building H-matrices: :func:`compress` (fixed rank, per-block tolerance, adaptive error-bounded).

* Fixed rank / tolerance: the block cluster tree follows the admissibility rule; every admissible
  block is compressed by the chosen method and accuracy, every other leaf is stored dense. A
  low-rank block that would store more bytes than the dense block is stored dense (exact).
* Adaptive (the method of arXiv 2409.07028): the global budget ``tol * ||A||_F`` is shared out as
  ``tol * ||A_b||_F`` per block; a block whose exact local error (with the stored, rounded
  factors) exceeds its share, at any rank cheaper than dense, is subdivided, down to dense leaves.
  Since the blocks partition A, ``||A - H||_F^2 = sum_b ||A_b - H_b||_F^2 <= tol^2 ||A||_F^2``:
  the bound is certified, and the exact achieved error is recorded in ``H.info``. Children are
  built before their parent is tried, and the parent stays in low rank only where that stores
  fewer bytes than its children: subdivision and recompression in one pass, so the build finds
  the cheapest partition that meets every share.
* Recompression (``recompress=True``, for tolerance builds): bottom up, the children of a block
  are merged into one low-rank parent where that stores fewer bytes and the parent still meets
  its share of the budget.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from .admissibility import AllAdmissible, make_admissibility
from .cluster import ClusterTree, cluster_data, cluster_geometric, cluster_index
from .hmatrix import HMatrix
from .lowrank import Accuracy, EntryBlock, get_compressor

__all__ = ["compress"]


@dataclass(eq=False)
class _Node:
    s: int
    t: int
    kind: str = "split"  # "lowrank", "dense" or "split"
    children: list | None = None
    u: np.ndarray | None = None
    vt: np.ndarray | None = None
    d: np.ndarray | None = None
    err2: float = 0.0  # squared exact Frobenius error of this leaf (nan if unknown)
    kids: list | None = None  # adaptive planning: the children considered
    alt: int = 0  # adaptive planning: entries stored by the best alternative to low rank
    plan: str = ""  # adaptive planning: "lowrank", "zero", "dense" or "split"

    def cost(self) -> int:
        if self.kind == "lowrank":
            return self.u.size + self.vt.size
        if self.kind == "dense":
            return self.d.size
        return sum(c.cost() for c in self.children)


def _as_matrix(A):
    """Validate and convert a dense input: 2-D, non-empty, real, finite."""
    if hasattr(A, "detach") and hasattr(A, "cpu"):  # a torch tensor, without importing torch
        A = A.detach().cpu().numpy()
    a = np.asarray(A)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"A must hold real numbers (float32/float64 or integers), got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix, got {a.ndim} dimensions (shape {a.shape})")
    if a.size == 0:
        raise ValueError(f"A must not be empty, got shape {a.shape}")
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("A contains non-finite entries (nan or inf)")
    return a


def _make_tree(kind, n, leaf_size, coords, features, name) -> ClusterTree:
    if kind == "index":
        return cluster_index(n, leaf_size)
    if kind == "geometric":
        if coords is None:
            raise ValueError(f"cluster='geometric' needs {name}_coords (an ({n}, d) array)")
        coords = np.asarray(coords, dtype=np.float64)
        coords = coords[:, None] if coords.ndim == 1 else coords
        if coords.shape[0] != n:
            raise ValueError(
                f"{name}_coords has {coords.shape[0]} points, the matrix has {n} {name}s")
        return cluster_geometric(coords, leaf_size)
    if kind == "data":
        if features is None:
            raise ValueError("cluster='data' needs the matrix as an array, not an entry function")
        return cluster_data(features, leaf_size)
    raise ValueError(f"cluster must be 'index', 'geometric' or 'data', got {kind!r}")


def compress(
    A,
    rank: int | None = None,
    tol: float | None = None,
    *,
    method="svd",
    adaptive: bool = False,
    recompress: bool = False,
    norm: str = "fro",
    admissibility="strong",
    eta: float | None = None,
    leaf_size: int = 32,
    cluster: str = "index",
    row_coords=None,
    col_coords=None,
    shape: tuple[int, int] | None = None,
    dtype=np.float64,
    blas_threads: int | None = 1,
) -> HMatrix:
    """Approximate a matrix by an H-matrix.

    Parameters
    ----------
    A : array_like (m, n) or callable
        The matrix, or an entry function ``A(rows, cols) -> array`` of the original indices, in
        which case ``shape`` is required and no more than one block is formed at a time (with
        ``method="aca"`` admissible blocks are never formed at all).
    rank, tol : exactly one of them
        Fixed rank of every admissible block, or relative tolerance in (0, 1): per block for the
        standard build, global and certified (``||A - H||_F <= tol ||A||_F``) with ``adaptive``.
    method : "svd", "aca", "rrqr" (alias "qr") or a compressor callable
    adaptive : error-bounded adaptive subdivision (needs ``tol`` and an array ``A``)
    recompress : merge children into a cheaper low-rank parent within the budget (needs ``tol``)
    norm : "fro" or "2", the norm of the per-block tolerance (adaptive builds use "fro")
    admissibility : "strong" (with ``eta``, default 1), "weak" (HODLR), "all" or a callable;
        the adaptive build defaults to "all" (the error test decides)
    leaf_size : smallest cluster size; blocks of two leaves are stored dense
    cluster : "index" (halve index ranges), "geometric" (needs ``row_coords``/``col_coords``) or
        "data" (group similar rows/columns; the permutation is applied inside ``@``)
    blas_threads : BLAS threads during the build (default 1; None leaves BLAS as it is). The
        build makes many small SVD/QR calls, where threaded BLAS gains little and, on a busy
        machine, loses 10-100x to oversubscription.
    """
    if blas_threads is None:
        return _compress(A, rank, tol, method, adaptive, recompress, norm, admissibility, eta,
                         leaf_size, cluster, row_coords, col_coords, shape, dtype)
    if isinstance(blas_threads, bool) or not isinstance(blas_threads, (int, np.integer)) \
            or blas_threads < 1:
        raise ValueError(f"blas_threads must be a positive integer or None, got {blas_threads!r}")
    with _blas_controller().limit(limits=int(blas_threads), user_api="blas"):
        return _compress(A, rank, tol, method, adaptive, recompress, norm, admissibility, eta,
                         leaf_size, cluster, row_coords, col_coords, shape, dtype)


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """One threadpoolctl controller per process (creating it scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _compress(A, rank, tol, method, adaptive, recompress, norm, admissibility, eta, leaf_size,
              cluster, row_coords, col_coords, shape, dtype) -> HMatrix:
    t_start = time.perf_counter()
    # ---- arguments -------------------------------------------------------------------------
    if (rank is None) == (tol is None):
        raise ValueError("give exactly one of rank= or tol=, got "
                         + ("both" if rank is not None else "neither"))
    if rank is not None:
        acc = Accuracy(rank=rank, norm=norm)
    else:
        acc = Accuracy(rtol=tol, norm=norm)
    if adaptive and tol is None:
        raise ValueError("adaptive=True needs tol= (the global relative error bound)")
    if recompress and tol is None:
        raise ValueError("recompress=True needs tol= (a fixed rank has no error budget)")
    if (adaptive or recompress) and norm != "fro":
        raise ValueError("adaptive and recompress certify the Frobenius norm: use norm='fro'")
    compressor = get_compressor(method)
    if adaptive and admissibility == "strong" and eta is None:
        adm = AllAdmissible()
    else:
        adm = make_admissibility(admissibility, eta)
    if isinstance(leaf_size, bool) or not isinstance(leaf_size, (int, np.integer)):
        raise TypeError(f"leaf_size must be an integer >= 1, got {leaf_size!r}")
    if leaf_size < 1:
        raise ValueError(f"leaf_size must be >= 1, got {leaf_size}")

    if callable(A) and not hasattr(A, "__array__") and not hasattr(A, "shape"):
        if shape is None or len(shape) != 2 or min(shape) < 1:
            raise ValueError("an entry function A needs shape=(m, n) with m, n >= 1")
        if adaptive or recompress:
            raise ValueError("adaptive and recompress need A as an array (exact block errors)")
        entries, a = A, None
        m, n = int(shape[0]), int(shape[1])
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
    else:
        a = _as_matrix(A)
        m, n = a.shape
        dt = a.dtype

    rows = _make_tree(cluster, m, leaf_size, row_coords, a, "row")
    cols = _make_tree(cluster, n, leaf_size, col_coords, None if a is None else a.T, "col")
    if a is not None and not (rows.is_identity and cols.is_identity):
        a = np.ascontiguousarray(a[np.ix_(rows.perm, cols.perm)])

    def block(s, t):
        r0, r1, c0, c1 = rows.start[s], rows.stop[s], cols.start[t], cols.stop[t]
        if a is not None:
            return a[r0:r1, c0:c1]
        return EntryBlock(entries, rows.perm[r0:r1], cols.perm[c0:c1], dt)

    def dense_leaf(node):
        d = np.ascontiguousarray(np.asarray(block(node.s, node.t) if a is not None
                                            else block(node.s, node.t).dense(), dtype=dt))
        if a is None and not np.all(np.isfinite(d)):
            raise ValueError("the entry function returned non-finite values")
        node.kind, node.d, node.err2 = "dense", d, 0.0
        return node

    def lowrank(node, accuracy):
        u, v = compressor(block(node.s, node.t), accuracy)
        u = np.ascontiguousarray(u, dtype=dt)
        vt = np.ascontiguousarray(np.asarray(v).T, dtype=dt)
        if not (np.all(np.isfinite(u)) and np.all(np.isfinite(vt))):
            raise ValueError("compression produced non-finite factors (non-finite entries?)")
        return u, vt

    def exact_err2(node, u, vt):
        blk = block(node.s, node.t).astype(np.float64)
        if u.shape[1]:
            blk = blk - u.astype(np.float64) @ vt.astype(np.float64)
        return float(np.sum(blk * blk))

    def children_of(node):
        cs = [node.s] if rows.is_leaf(node.s) else list(rows.children[node.s])
        ct = [node.t] if cols.is_leaf(node.t) else list(cols.children[node.t])
        return [_Node(int(s), int(t)) for s in cs for t in ct]

    def size(node):
        return (int(rows.stop[node.s] - rows.start[node.s]),
                int(cols.stop[node.t] - cols.start[node.t]))

    # ---- build -----------------------------------------------------------------------------
    tol2 = None if tol is None else tol * tol
    # methods that form the block anyway plan the partition from singular values first (several
    # times cheaper than factorising every candidate); ACA stays matrix-light in one pass
    prescreen = adaptive and method in ("svd", "rrqr", "qr")

    def build(node):
        bm, bn = size(node)
        leafy = rows.is_leaf(node.s) and cols.is_leaf(node.t)
        if adm(rows, node.s, cols, node.t):
            u, vt = lowrank(node, acc)
            if u.shape[1] * (bm + bn) < bm * bn:
                node.kind, node.u, node.vt = "lowrank", u, vt
                node.err2 = exact_err2(node, u, vt) if a is not None else math.nan
                return node
            return dense_leaf(node)  # low rank would store more than the block itself
        if leafy:
            return dense_leaf(node)
        node.children = [build(c) for c in children_of(node)]
        return node

    def lowrank_within_share(node, kmax):
        """Factors of rank <= kmax whose exact error meets the block's share, else None."""
        blk = block(node.s, node.t)
        share2 = tol2 * float(np.sum(blk.astype(np.float64) ** 2))
        if kmax < 1:
            return None
        u, vt = lowrank(node, Accuracy(rtol=tol, max_rank=kmax))
        e2 = exact_err2(node, u, vt)
        return (u, vt, e2) if e2 <= share2 else None

    def set_lowrank(node, u, vt, e2):
        node.kind, node.u, node.vt, node.err2, node.children = "lowrank", u, vt, e2, None
        return node

    def set_zero(node):
        bm, bn = size(node)
        return set_lowrank(node, np.zeros((bm, 0), dt), np.zeros((0, bn), dt), 0.0)

    def plan(node):
        """Pass 1 (methods that form the block anyway): the cheapest partition, in stored
        entries, from singular values alone. A block may be low rank (the smallest rank whose
        Eckart-Young error meets its share), dense, or split into its children; children are
        planned first and the parent keeps whichever option stores fewer entries."""
        bm, bn = size(node)
        leafy = rows.is_leaf(node.s) and cols.is_leaf(node.t)
        node.kids = None if leafy else children_of(node)
        node.alt = bm * bn if leafy else sum(plan(c) for c in node.kids)
        node.plan = "dense" if leafy or node.alt >= bm * bn else "split"
        best = min(node.alt, bm * bn)
        if adm(rows, node.s, cols, node.t):
            blk = block(node.s, node.t).astype(np.float64)
            sv = np.linalg.svd(blk, compute_uv=False)
            tail2 = np.append(np.cumsum((sv ** 2)[::-1])[::-1], 0.0)
            k = int(np.argmax(tail2 <= tol2 * tail2[0]))
            if tail2[0] == 0.0:
                node.plan, best = "zero", 0
            elif k * (bm + bn) < best:
                node.plan, best = "lowrank", k * (bm + bn)
        return best

    def realize(node):
        """Pass 2: compute the factors of the planned partition and check every share exactly;
        a block whose factors miss their share falls back to its alternative."""
        bm, bn = size(node)
        if node.plan == "zero":
            return set_zero(node)
        if node.plan == "lowrank":
            # the SVD-optimal rank is a lower bound; any rank that still stores less will do
            kmax = min((bm * bn - 1) // (bm + bn), (min(node.alt, bm * bn) - 1) // (bm + bn))
            got = lowrank_within_share(node, kmax)
            if got is not None:
                return set_lowrank(node, *got)
        if node.kids is None or node.alt >= bm * bn:
            return dense_leaf(node)
        node.children = [realize(c) for c in node.kids]
        return node

    def build_adaptive(node):
        """One pass (ACA, which never forms an admissible block): the same choice as
        :func:`plan` with the compressor's own factors and exact errors."""
        bm, bn = size(node)
        leafy = rows.is_leaf(node.s) and cols.is_leaf(node.t)
        kids = None if leafy else [build_adaptive(c) for c in children_of(node)]
        alt = bm * bn if leafy else sum(c.cost() for c in kids)
        if adm(rows, node.s, cols, node.t):
            blk = block(node.s, node.t)
            if not np.any(blk):
                return set_zero(node)
            kmax = min((bm * bn - 1) // (bm + bn), (min(alt, bm * bn) - 1) // (bm + bn))
            got = lowrank_within_share(node, kmax)
            if got is not None:
                return set_lowrank(node, *got)
        if kids is None or alt >= bm * bn:
            return dense_leaf(node)
        node.children = kids
        return node

    root = _Node(0, 0)
    if not adaptive:
        build(root)
    elif prescreen:
        plan(root)
        realize(root)
    else:
        build_adaptive(root)
    if recompress:
        _recompress(root, block, lowrank, exact_err2, tol2)

    H = _pack((m, n), root, dt, rows, cols)
    err2 = _sum_err2(root)
    H.info.update(
        method=getattr(method, "__name__", str(method)), rank=rank, tol=tol, norm=norm,
        adaptive=adaptive, recompress=recompress, admissibility=repr(adm), leaf_size=leaf_size,
        cluster=cluster, build_seconds=time.perf_counter() - t_start,
    )
    if a is not None:
        norm_a = float(np.linalg.norm(a.astype(np.float64)))
        H.info["norm_fro"] = norm_a
        # exact ||A - H||_F from the stored factors (leaf errors are independent: a partition)
        H.info["rel_error_fro"] = math.sqrt(err2) / norm_a if norm_a > 0 else 0.0
        if adaptive:  # every leaf was checked against its share with its stored factors
            H.info["certified_bound"] = tol
    return H


def _sum_err2(node) -> float:
    if node.kind != "split":
        return node.err2
    return sum(_sum_err2(c) for c in node.children)


def _recompress(node, block, lowrank, exact_err2, tol2):
    """Bottom-up: replace a split node whose children are all leaves by one low-rank block when
    that is cheaper and meets the node's budget ``tol^2 ||A_node||_F^2``."""
    if node.kind != "split":
        return
    for c in node.children:
        _recompress(c, block, lowrank, exact_err2, tol2)
    if any(c.kind == "split" for c in node.children):
        return
    bm, bn = block(node.s, node.t).shape
    cost_children = node.cost()
    cap = (cost_children - 1) // (bm + bn)
    if cap < 1:
        return
    u, vt = lowrank(node, Accuracy(rtol=math.sqrt(tol2), max_rank=cap))
    e2 = exact_err2(node, u, vt)
    blk = block(node.s, node.t)
    if e2 <= tol2 * float(np.sum(blk.astype(np.float64) ** 2)):
        node.kind, node.u, node.vt, node.err2, node.children = "lowrank", u, vt, e2, None


def _pack(shape, root, dtype, rows: ClusterTree, cols: ClusterTree) -> HMatrix:
    """Flatten the leaves of the block tree into the packed arrays of :class:`HMatrix`."""
    lr, dn = [], []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.kind == "split":
            stack.extend(reversed(node.children))
        elif node.kind == "lowrank":
            lr.append(node)
        else:
            dn.append(node)
    # row-major block order (by row start, then column) keeps the kernels' memory walk forward
    key = lambda nd: (rows.start[nd.s], cols.start[nd.t])  # noqa: E731
    lr.sort(key=key)
    dn.sort(key=key)
    lr_desc = np.zeros((len(lr), 6), dtype=np.int64)
    parts, off = [], 0
    for b, nd in enumerate(lr):
        bm, k = nd.u.shape
        bn = nd.vt.shape[1]
        lr_desc[b] = (rows.start[nd.s], bm, cols.start[nd.t], bn, k, off)
        parts += [nd.u.ravel(), nd.vt.ravel()]
        off += k * (bm + bn)
    lr_data = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    d_desc = np.zeros((len(dn), 5), dtype=np.int64)
    parts, off = [], 0
    for b, nd in enumerate(dn):
        bm, bn = nd.d.shape
        d_desc[b] = (rows.start[nd.s], bm, cols.start[nd.t], bn, off)
        parts.append(nd.d.ravel())
        off += bm * bn
    d_data = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return HMatrix(
        shape=shape, lr_desc=lr_desc, lr_data=lr_data, d_desc=d_desc, d_data=d_data,
        row_perm=None if rows.is_identity else rows.perm.copy(),
        col_perm=None if cols.is_identity else cols.perm.copy(),
    )
