"""The block cluster tree: which blocks are low rank, dense or split, and how they are chosen.

The one place for

* the fixed-rank / per-block-tolerance build (:func:`build_fixed`): admissible blocks are
  compressed, inadmissible leaves stored dense, and a low-rank block that would store more than
  the dense block is stored dense (exact);
* the adaptive rule (:func:`choose`): children first; a block stays in low rank only where the
  smallest rank meeting its share of the error budget stores fewer entries than its best
  alternative (its children, or dense where splitting saves nothing). :class:`SpectralPlan`
  applies it from singular values alone (the plan of a build whose compressor forms blocks
  anyway, and the byte-budget search), :func:`build_adaptive` with a compressor's own factors
  and exact errors;
* recompression (:func:`recompress`): children merged into one low-rank parent where cheaper;
* the leaves handed to :meth:`hmat.HMatrix.from_blocks` (:func:`to_hmatrix`), or stored in
  low precision (:func:`to_quantized`): each leaf keeps its share ``tol ||A_b||_F`` of the
  budget for truncation and rounding together, so the certified bound counts the rounding.

Errors are exact: for an array input, every leaf's ``||A_b - H_b||_F^2`` is computed with the
stored, rounded factors; the leaves partition ``A``, so they add up to ``||A - H||_F^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._layout import descriptor_nbytes
from .cluster import ClusterTree
from .compressors import Accuracy, EntryBlock, LowRank, frobenius_tail
from .hmatrix import HMatrix
from .precision import pack_leaves, quantize_block, share2
from .qhmatrix import QuantizedHMatrix

__all__ = ["Blocks", "Node", "lowrank_cap", "choose", "build_fixed", "build_adaptive",
           "SpectralPlan", "recompress", "to_hmatrix", "to_quantized"]


@dataclass(eq=False)
class Blocks:
    """The matrix to compress, seen through its row and column cluster trees: ``a`` (already
    permuted to cluster order) or an entry function of the original indices."""

    rows: ClusterTree
    cols: ClusterTree
    dtype: np.dtype
    a: np.ndarray | None = None
    entries: object = None

    def size(self, s: int, t: int) -> tuple[int, int]:
        return (int(self.rows.stop[s] - self.rows.start[s]),
                int(self.cols.stop[t] - self.cols.start[t]))

    def leafy(self, s: int, t: int) -> bool:
        return bool(self.rows.is_leaf(s) and self.cols.is_leaf(t))

    def block(self, s: int, t: int):
        """The block as an array view (array input) or an :class:`EntryBlock`."""
        r0, r1 = self.rows.start[s], self.rows.stop[s]
        c0, c1 = self.cols.start[t], self.cols.stop[t]
        if self.a is not None:
            return self.a[r0:r1, c0:c1]
        return EntryBlock(self.entries, self.rows.perm[r0:r1], self.cols.perm[c0:c1], self.dtype)

    def dense(self, s: int, t: int) -> np.ndarray:
        blk = self.block(s, t)
        d = np.ascontiguousarray(np.asarray(blk if self.a is not None else blk.dense(),
                                            dtype=self.dtype))
        if self.a is None and not np.all(np.isfinite(d)):
            raise ValueError("the entry function returned non-finite values")
        return d

    def norm2(self, s: int, t: int) -> float:
        """``||A_b||_F^2`` (array input only)."""
        blk = self.block(s, t).astype(np.float64)
        return float(np.sum(blk * blk))

    def err2(self, s: int, t: int, lr: LowRank) -> float:
        """Exact ``||A_b - U Vt||_F^2`` with the stored factors (nan for an entry function)."""
        if self.a is None:
            return math.nan
        blk = self.block(s, t).astype(np.float64)
        if lr.rank:
            blk = blk - lr.u.astype(np.float64) @ lr.vt.astype(np.float64)
        return float(np.sum(blk * blk))

    def children(self, s: int, t: int) -> list[tuple[int, int]]:
        """The sub-blocks of a block (a leaf cluster is kept whole on its side)."""
        cs = [s] if self.rows.is_leaf(s) else [int(c) for c in self.rows.children[s]]
        ct = [t] if self.cols.is_leaf(t) else [int(c) for c in self.cols.children[t]]
        return [(i, j) for i in cs for j in ct]


@dataclass(eq=False)
class Node:
    """A block of the tree: ``kind`` "lowrank", "dense" or "split" (into ``children``)."""

    s: int
    t: int
    kind: str = "split"
    children: list[Node] = field(default_factory=list)
    lowrank: LowRank | None = None
    dense: np.ndarray | None = None
    err2: float = 0.0  # squared exact Frobenius error of this leaf (nan if unknown)

    def entries(self) -> int:
        """Matrix entries stored below this node (factors and dense blocks)."""
        if self.kind == "lowrank":
            return self.lowrank.u.size + self.lowrank.vt.size
        if self.kind == "dense":
            return self.dense.size
        return sum(c.entries() for c in self.children)

    def set_lowrank(self, lr: LowRank, err2: float) -> Node:
        self.kind, self.lowrank, self.err2, self.children = "lowrank", lr, err2, []
        return self

    def set_dense(self, d: np.ndarray) -> Node:
        self.kind, self.dense, self.err2, self.children = "dense", d, 0.0, []
        return self

    def leaves(self):
        if self.kind != "split":
            yield self
            return
        for c in self.children:
            yield from c.leaves()


def lowrank_cap(bm: int, bn: int, below: int) -> int:
    """Largest rank whose factors of a ``bm x bn`` block store fewer than ``below`` entries."""
    return max((int(below) - 1) // (bm + bn), 0)


def choose(bm: int, bn: int, children: int | None, rank: int | None) -> tuple[str, int]:
    """The adaptive rule: ``(choice, entries)`` for a ``bm x bn`` block whose children store
    ``children`` entries at best (None for a leaf) and whose smallest rank meeting its share is
    ``rank`` (None: no rank does, or the block is not admissible). Low rank (``"zero"`` at rank
    0) where it stores fewer entries than the alternative; else ``"split"`` where the children
    store fewer than the dense block; else ``"dense"``."""
    dense = bm * bn
    choice, best = ("split", children) if children is not None and children < dense \
        else ("dense", dense)
    if rank is not None and rank * (bm + bn) < best:
        return ("zero" if rank == 0 else "lowrank"), rank * (bm + bn)
    return choice, best


# ---------------------------------------------------------------- fixed rank / tolerance
def build_fixed(src: Blocks, compressor, accuracy: Accuracy, admissible, s=0, t=0) -> Node:
    """Admissible blocks in low rank (dense where that is not smaller), inadmissible leaves
    dense, the rest split."""
    node = Node(s, t)
    bm, bn = src.size(s, t)
    if admissible(src.rows, s, src.cols, t):
        lr = _factors(src, compressor, s, t, accuracy)
        if lr.rank * (bm + bn) < bm * bn:
            return node.set_lowrank(lr, src.err2(s, t, lr))
        return node.set_dense(src.dense(s, t))  # low rank would store more than the block
    if src.leafy(s, t):
        return node.set_dense(src.dense(s, t))
    node.children = [build_fixed(src, compressor, accuracy, admissible, i, j)
                     for i, j in src.children(s, t)]
    return node


def _factors(src: Blocks, compressor, s, t, accuracy: Accuracy) -> LowRank:
    u, vt = compressor(src.block(s, t), accuracy)
    lr = LowRank(np.ascontiguousarray(u, dtype=src.dtype), np.ascontiguousarray(vt, src.dtype))
    if not (np.all(np.isfinite(lr.u)) and np.all(np.isfinite(lr.vt))):
        raise ValueError("compression produced non-finite factors (non-finite entries?)")
    return lr


def _within_share(src: Blocks, compressor, s, t, tol: float, kmax: int):
    """``(factors, err2)`` of rank <= kmax whose exact error meets the block's share
    ``tol ||A_b||_F``, else None."""
    if kmax < 1:
        return None
    lr = _factors(src, compressor, s, t, Accuracy(rtol=tol, max_rank=kmax))
    e2 = src.err2(s, t, lr)
    return (lr, e2) if e2 <= tol * tol * src.norm2(s, t) else None


# ---------------------------------------------------------------- adaptive, error-bounded
def build_adaptive(src: Blocks, compressor, tol: float, admissible, s=0, t=0) -> Node:
    """One pass with the compressor's own factors (for compressors that never form a block,
    such as ACA): children first, then :func:`choose` with the rank the compressor reaches."""
    node = Node(s, t)
    bm, bn = src.size(s, t)
    kids = None if src.leafy(s, t) else [build_adaptive(src, compressor, tol, admissible, i, j)
                                         for i, j in src.children(s, t)]
    alt = None if kids is None else sum(c.entries() for c in kids)
    fallback, best = choose(bm, bn, alt, None)
    if admissible(src.rows, s, src.cols, t):
        if src.norm2(s, t) == 0.0:
            return node.set_lowrank(LowRank.zero(bm, bn, src.dtype), 0.0)
        got = _within_share(src, compressor, s, t, tol, lowrank_cap(bm, bn, best))
        if got is not None:
            return node.set_lowrank(*got)
    if fallback == "dense":
        return node.set_dense(src.dense(s, t))
    node.children = kids
    return node


class SpectralPlan:
    """The adaptive rule from singular values alone: one SVD per node of the block tree, then
    the cheapest partition for any tolerance without factorising anything.

    Used by the adaptive build with compressors that form the block anyway (plan, then
    factorise only the chosen blocks and check every share exactly) and by the byte-budget
    search (:meth:`tol_for_bytes`).
    """

    def __init__(self, src: Blocks, admissible):
        self.src = src
        self.nodes = []  # (s, t, bm, bn, child ids or None, Frobenius tails or None)

        def visit(s, t):
            bm, bn = src.size(s, t)
            tails = None
            if admissible(src.rows, s, src.cols, t):
                blk = src.block(s, t)
                blk = blk if src.a is not None else blk.dense()
                tails = frobenius_tail(np.linalg.svd(np.asarray(blk, np.float64),
                                                     compute_uv=False) ** 2)
            idx = len(self.nodes)
            self.nodes.append(None)
            kids = None if src.leafy(s, t) else [visit(i, j) for i, j in src.children(s, t)]
            self.nodes[idx] = (s, t, bm, bn, kids, tails)
            return idx

        visit(0, 0)

    def choices(self, tol: float) -> list[tuple[str, int, int | None]]:
        """Per node: ``(choice, entries, children's entries)`` under :func:`choose`."""
        out = [None] * len(self.nodes)

        def visit(idx):
            _, _, bm, bn, kids, tails = self.nodes[idx]
            alt = None if kids is None else sum(visit(c) for c in kids)
            rank = None if tails is None else int(np.argmax(tails <= tol * tails[0]))
            choice, entries = choose(bm, bn, alt, rank)
            out[idx] = (choice, entries, alt)
            return entries

        visit(0)
        return out

    def predict(self, tol: float) -> tuple[int, int, int]:
        """(stored entries, low-rank blocks, dense blocks) of the adaptive build at ``tol``."""
        ch = self.choices(tol)

        def count(idx):
            choice = ch[idx][0]
            if choice == "split":
                parts = [count(c) for c in self.nodes[idx][4]]
                return tuple(sum(p[i] for p in parts) for i in range(2))
            return (0, 1) if choice == "dense" else (1, 0)

        n_lr, n_d = count(0)
        return ch[0][1], n_lr, n_d

    def predicted_nbytes(self, tol: float) -> int:
        """Factor and dense bytes plus the descriptor tables (segment, run and schedule tables
        come on top; :meth:`HMatrix.nbytes` counts them)."""
        entries, n_lr, n_d = self.predict(tol)
        return entries * self.src.dtype.itemsize + descriptor_nbytes(n_lr, n_d)

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

    def build(self, compressor, tol: float) -> Node:
        """Factorise the planned partition; a block whose factors miss their share (possible
        for a compressor other than the SVD) falls back to its alternative."""
        ch, src = self.choices(tol), self.src

        def realize(idx):
            s, t, bm, bn, kids, _ = self.nodes[idx]
            choice, _, alt = ch[idx]
            node = Node(s, t)
            if choice == "zero":
                return node.set_lowrank(LowRank.zero(bm, bn, src.dtype), 0.0)
            fallback, best = choose(bm, bn, alt, None)
            if choice == "lowrank":
                # the SVD-optimal rank is a lower bound; any rank that still stores less will do
                got = _within_share(src, compressor, s, t, tol, lowrank_cap(bm, bn, best))
                if got is not None:
                    return node.set_lowrank(*got)
            if fallback == "dense":
                return node.set_dense(src.dense(s, t))
            node.children = [realize(c) for c in kids]
            return node

        return realize(0)


# ---------------------------------------------------------------- recompression
def recompress(node: Node, src: Blocks, compressor, tol: float) -> None:
    """Bottom-up: replace a split node whose children are all leaves by one low-rank block when
    that stores fewer entries and meets the node's share ``tol ||A_node||_F``."""
    if node.kind != "split":
        return
    for c in node.children:
        recompress(c, src, compressor, tol)
    if any(c.kind == "split" for c in node.children):
        return
    bm, bn = src.size(node.s, node.t)
    got = _within_share(src, compressor, node.s, node.t, tol,
                        lowrank_cap(bm, bn, node.entries()))
    if got is not None:
        node.set_lowrank(*got)


# ---------------------------------------------------------------- packing
def to_hmatrix(root: Node, src: Blocks, shape) -> HMatrix:
    """The leaves of the tree as an :class:`HMatrix` (in the trees' permuted order)."""
    rows, cols = src.rows, src.cols
    lowrank, dense = [], []
    for leaf in root.leaves():
        r0, c0 = int(rows.start[leaf.s]), int(cols.start[leaf.t])
        if leaf.kind == "lowrank":
            lowrank.append((r0, c0, leaf.lowrank.u, leaf.lowrank.vt))
        else:
            dense.append((r0, c0, leaf.dense))
    return HMatrix.from_blocks(
        shape, lowrank, dense, dtype=src.dtype,
        row_perm=None if rows.is_identity else rows.perm.copy(),
        col_perm=None if cols.is_identity else cols.perm.copy())


def error2(root: Node) -> float:
    """``||A - H||_F^2``: the sum of the leaves' exact squared errors."""
    return float(sum(leaf.err2 for leaf in root.leaves()))


def to_quantized(root: Node, src: Blocks, shape, precision: str, tol: float | None,
                 dtype) -> tuple[QuantizedHMatrix, float]:
    """The leaves in low precision, and ``||A - H||_F^2`` of what is stored (nan for an entry
    function). ``precision="adaptive"``: per leaf, the cheaper of a low-rank storage (from the
    block's SVD, a storage per column, dropping included) and a dense one (a storage per row),
    each within the leaf's share ``tol ||A_b||_F`` less room for rounding to ``dtype`` (the
    type of ``to_dense``); otherwise every column/row of every leaf in ``precision``."""
    rows, cols = src.rows, src.cols
    leaves, total = [], 0.0
    for leaf in root.leaves():
        r0, c0 = int(rows.start[leaf.s]), int(cols.start[leaf.t])
        block = None if src.a is None else src.block(leaf.s, leaf.t)
        budget2 = None if precision != "adaptive" else share2(tol, src.norm2(leaf.s, leaf.t),
                                                               dtype)
        q = quantize_block(r0, c0, precision, block=block, budget2=budget2,
                           allow_f64=np.dtype(dtype) == np.float64,
                           factors=(leaf.lowrank.u, leaf.lowrank.vt)
                           if leaf.kind == "lowrank" else None,
                           dense=leaf.dense)
        leaves.append(q)
        total += q.err2
    H = QuantizedHMatrix(shape, pack_leaves(leaves), dtype,
                         row_perm=None if rows.is_identity else rows.perm.copy(),
                         col_perm=None if cols.is_identity else cols.perm.copy(),
                         precision=precision)
    return H, total

