"""The :class:`HMatrix`: packed storage of low-rank and dense blocks, products, save/load.

All factors live in two flat arrays (row panels holding every dense block and every ``U``, and
the ``Vt`` factors) addressed by small integer tables, so a 1000 x 1280 matrix with hundreds of
blocks is a handful of NumPy arrays, not hundreds of Python objects. Blocks are stored in the
permuted index order of the row/column cluster trees; products permute inside ``@``, so users
always work in the original order. Build one with :func:`hmat.compress`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _kernels

__all__ = ["HMatrix", "Block", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class Block(NamedTuple):
    """One leaf of the block partition, in permuted indices; ``rank`` is -1 for dense blocks."""

    kind: str  # "lowrank" or "dense"
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    rank: int


class _Plan(NamedTuple):
    """How one product is split into row tasks (see :mod:`hmat._kernels`)."""

    task_chunk: np.ndarray  # (n_tasks + 1,) first chunk of each task
    task_ptr: np.ndarray  # CSR pointers into task_lr
    task_lr: np.ndarray  # low-rank blocks lying wholly inside each task's rows
    shared: np.ndarray  # low-rank blocks that a task cut crosses (their Vt x is computed first)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self))


def _schedule(chunks, chunk_cost, lr_desc, n_tasks: int) -> _Plan:
    """Group consecutive chunks into at most ``n_tasks`` tasks of about equal work.

    A cut goes where no low-rank block crosses it when one lies close to the ideal place (within
    15 % of a task's work); otherwise at the nearest chunk boundary, and the low-rank blocks that
    it crosses become ``shared``.
    """
    n_chunks = len(chunks) - 1
    cum = np.concatenate([[0.0], np.cumsum(chunk_cost)])
    total = cum[-1]
    starts, stops = lr_desc[:, 0], lr_desc[:, 0] + lr_desc[:, 1]
    # chunk boundaries that cut no low-rank block
    crossing = np.zeros(len(chunks), dtype=bool)
    for r0, r1 in zip(starts, stops, strict=True):
        crossing |= (chunks > r0) & (chunks < r1)
    free = np.flatnonzero(~crossing)
    cuts = [0]
    for t in range(1, max(1, min(n_tasks, n_chunks))):
        target = total * t / n_tasks
        best = free[np.argmin(np.abs(cum[free] - target))]
        if abs(cum[best] - target) > 0.15 * total / n_tasks:
            best = int(np.argmin(np.abs(cum - target)))
        if cuts[-1] < best < n_chunks:
            cuts.append(int(best))
    cuts.append(n_chunks)
    task_chunk = np.asarray(cuts, dtype=np.int64)
    bounds = chunks[task_chunk]
    first = np.searchsorted(bounds, starts, side="right") - 1
    last = np.searchsorted(bounds, stops, side="left")
    owned = (last - first == 1) & (lr_desc[:, 4] > 0)
    shared = np.flatnonzero((last - first > 1) & (lr_desc[:, 4] > 0)).astype(np.int64)
    order = np.flatnonzero(owned)
    order = order[np.argsort(first[order], kind="stable")]
    task_ptr = np.zeros(len(task_chunk), dtype=np.int64)
    np.add.at(task_ptr, first[order] + 1, 1)
    return _Plan(task_chunk, np.cumsum(task_ptr).astype(np.int64), order.astype(np.int64), shared)


class _Panels(NamedTuple):
    """The row-panel storage (layout in :mod:`hmat._kernels`)."""

    panel: np.ndarray  # every chunk's panel, row-major, one after another
    vt: np.ndarray  # Vt of every low-rank block
    pan_off: np.ndarray  # (n_chunks + 1,) offsets of the panels
    chunks: np.ndarray  # (n_chunks + 1,) row cuts
    seg_ptr: np.ndarray  # (n_chunks + 1,) CSR pointers into seg
    seg: np.ndarray  # (n_segments, 4): item (b low-rank, ~b dense), src, len, pos
    vt_off: np.ndarray  # (n_lowrank + 1,) offsets of Vt
    t_off: np.ndarray  # (n_lowrank + 1,) offsets of t = Vt x
    run_ptr: np.ndarray  # (n_chunks + 1,) CSR pointers into runs
    runs: np.ndarray  # (n_runs, 4): source (0: x, 1: t), src, len, pos: the product's gathers


def _to_panels(shape, lr_desc, lr_data, d_desc, d_data) -> _Panels:
    """Rearrange block-form factors (each block's U, Vt, D contiguous) into row panels."""
    m = shape[0]
    k_all = lr_desc[:, 4]
    live = np.flatnonzero(k_all > 0)  # rank-0 blocks contribute nothing and store nothing
    r0s = np.concatenate([d_desc[:, 0], lr_desc[live, 0]])  # same order as ``items`` below
    r1s = r0s + np.concatenate([d_desc[:, 1], lr_desc[live, 1]])
    chunks = np.unique(np.concatenate([[0, m], r0s, r1s])).astype(np.int64)
    n_chunks = len(chunks) - 1
    # one segment per (block, chunk it covers): dense blocks first, then low rank, by column
    items = np.concatenate([~np.arange(len(d_desc)), live]).astype(np.int64)
    kinds = np.concatenate([np.zeros(len(d_desc)), np.ones(len(live))])
    cols = np.concatenate([d_desc[:, 2], lr_desc[live, 2]])
    widths = np.concatenate([d_desc[:, 3], k_all[live]]).astype(np.int64)
    first = np.searchsorted(chunks, r0s)
    last = np.searchsorted(chunks, r1s)
    counts = last - first
    chunk_of = np.repeat(first, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    rep = np.repeat(np.arange(len(items)), counts)
    order = np.lexsort((cols[rep], kinds[rep], chunk_of))
    chunk_of, rep = chunk_of[order], rep[order]
    seg_len = widths[rep]
    seg_ptr = np.zeros(n_chunks + 1, dtype=np.int64)
    np.add.at(seg_ptr, chunk_of + 1, 1)
    seg_ptr = np.cumsum(seg_ptr)
    ends = np.cumsum(seg_len)
    seg_pos = ends - seg_len - np.repeat(np.concatenate([[0], ends])[seg_ptr[:-1]],
                                         np.diff(seg_ptr))
    chunk_width = np.zeros(n_chunks, dtype=np.int64)
    np.add.at(chunk_width, chunk_of, seg_len)
    pan_off = np.concatenate([[0], np.cumsum(np.diff(chunks) * chunk_width)]).astype(np.int64)
    t_off = np.concatenate([[0], np.cumsum(k_all)]).astype(np.int64)
    seg_item = items[rep]
    seg_src = np.where(seg_item >= 0, t_off[np.maximum(seg_item, 0)],
                       d_desc[np.maximum(~seg_item, 0), 2] if len(d_desc) else 0)
    seg = np.stack([seg_item, seg_src, seg_len, seg_pos], axis=1).astype(np.int64)
    panel = np.empty(pan_off[-1], dtype=lr_data.dtype)
    for s in range(len(seg)):
        c = chunk_of[s]
        lo, hi = chunks[c], chunks[c + 1]
        P = panel[pan_off[c]:pan_off[c + 1]].reshape(hi - lo, chunk_width[c])
        item, ln, pos = seg_item[s], seg_len[s], seg_pos[s]
        if item >= 0:
            r0, bm, _, _, k, off = lr_desc[item]
            rows = lr_data[off:off + bm * k].reshape(bm, k)[lo - r0:hi - r0]
        else:
            r0, bm, _, bn, off = d_desc[~item]
            rows = d_data[off:off + bm * bn].reshape(bm, bn)[lo - r0:hi - r0]
        P[:, pos:pos + ln] = rows
    vt_off = np.concatenate([[0], np.cumsum(k_all * lr_desc[:, 3])]).astype(np.int64)
    vt = np.empty(vt_off[-1], dtype=lr_data.dtype)
    for b in live:
        r0, bm, _, bn, k, off = lr_desc[b]
        vt[vt_off[b]:vt_off[b + 1]] = lr_data[off + bm * k:off + bm * k + k * bn]
    run_ptr, runs = _gather_runs(n_chunks, chunk_of, (seg_item >= 0).astype(np.int64), seg_src,
                                 seg_len, seg_pos)
    return _Panels(panel, vt, pan_off, chunks, seg_ptr, seg, vt_off, t_off, run_ptr, runs)


def _gather_runs(n_chunks, chunk_of, source, src, ln, pos):
    """Merge a chunk's consecutive segments that read consecutive entries of one source (the
    columns of ``x`` of adjacent dense blocks; the ``t`` of low-rank blocks stored one after
    another) into one copy: the MobileNetV2 classifier at rank 30 has 482 segments, 80 runs."""
    cont = ((chunk_of[1:] == chunk_of[:-1]) & (source[1:] == source[:-1])
            & (src[:-1] + ln[:-1] == src[1:]) & (pos[:-1] + ln[:-1] == pos[1:]))
    starts = np.flatnonzero(np.concatenate([[True], ~cont])) if len(ln) else np.zeros(0, int)
    run_len = np.add.reduceat(ln, starts) if len(starts) else np.zeros(0, np.int64)
    runs = np.stack([source[starts], src[starts], run_len, pos[starts]], axis=1)
    run_ptr = np.zeros(n_chunks + 1, dtype=np.int64)
    np.add.at(run_ptr, chunk_of[starts] + 1, 1)
    return np.cumsum(run_ptr), np.ascontiguousarray(runs, dtype=np.int64).reshape(-1, 4)


def _chunk_cost(pn: _Panels, lr_desc) -> np.ndarray:
    """Entries read per chunk: its panel, plus each low-rank block's Vt spread over its rows."""
    rows = np.diff(pn.chunks)
    cost = np.diff(pn.pan_off).astype(np.float64)
    mid = 0.5 * (pn.chunks[:-1] + pn.chunks[1:])
    for r0, m, _, n, k, _ in lr_desc:
        inside = (mid > r0) & (mid < r0 + m)
        cost[inside] += k * n * rows[inside] / m
    return cost


class HMatrix:
    """An H-matrix approximation of an ``m x n`` matrix in packed row-panel storage.

    Built by :func:`hmat.compress`, or from block form: ``lr_desc`` rows ``(r0, m, c0, n, k,
    off)`` with ``U`` (m x k) then ``Vt`` (k x n), row-major, at ``lr_data[off:]``; ``d_desc`` rows
    ``(r0, m, c0, n, off)`` with a dense block at ``d_data[off:]``. Block form is the exchange
    format (:attr:`lr_data`, :attr:`d_data`, :meth:`save`); inside, every chunk of rows keeps one
    contiguous panel (see :mod:`hmat._kernels`), so products stream long rows.

    Supports ``H @ x`` (vector or matrix, numba kernels, parallel over row tasks), ``H.T @ y``
    via :meth:`rmatvec`, :meth:`to_dense`, :attr:`nbytes`, :meth:`save`, and
    :meth:`aslinearoperator`. The dtype of the result follows NumPy's promotion rules, so a
    float32 H-matrix times a float32 vector stays float32.
    """

    def __init__(self, shape, lr_desc, lr_data, d_desc, d_data, row_perm=None, col_perm=None,
                 info=None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.lr_desc = np.ascontiguousarray(lr_desc, dtype=np.int64).reshape(-1, 6)
        self.d_desc = np.ascontiguousarray(d_desc, dtype=np.int64).reshape(-1, 5)
        lr_data, d_data = np.asarray(lr_data), np.asarray(d_data)
        if lr_data.dtype != d_data.dtype or lr_data.dtype.kind != "f":
            raise TypeError("lr_data and d_data must share one floating dtype, got "
                            f"{lr_data.dtype} and {d_data.dtype}")
        self.row_perm = None if row_perm is None else np.asarray(row_perm, dtype=np.int64)
        self.col_perm = None if col_perm is None else np.asarray(col_perm, dtype=np.int64)
        self.info = dict(info or {})
        self._dtype = lr_data.dtype
        self._check_partition(lr_data.size, d_data.size)
        self._pn = _to_panels(self.shape, self.lr_desc, lr_data.ravel(), self.d_desc,
                              d_data.ravel())
        widths = np.diff(self._pn.pan_off) // np.maximum(np.diff(self._pn.chunks), 1)
        self._wmax = int(widths.max(initial=0))  # widest panel: the gather buffer's size
        self._plan = _schedule(self._pn.chunks, _chunk_cost(self._pn, self.lr_desc),
                               self.lr_desc, _kernels.N_TASKS)
        self._work = int(self._pn.panel.size + self._pn.vt.size)  # entries read per vector
        self._cast_cache: dict = {}

    def _check_partition(self, lr_size, d_size):
        """The blocks must tile the matrix exactly once (guards load() against corrupt files)."""
        m, n = self.shape
        area = int(np.sum(self.lr_desc[:, 1] * self.lr_desc[:, 3]) +
                   np.sum(self.d_desc[:, 1] * self.d_desc[:, 3]))
        desc = np.concatenate([self.lr_desc[:, :4], self.d_desc[:, :4]])
        ok = (area == m * n and np.all(desc[:, 1] > 0) and np.all(desc[:, 3] > 0)
              and np.all(desc[:, 0] >= 0) and np.all(desc[:, 2] >= 0)
              and np.all(desc[:, 0] + desc[:, 1] <= m) and np.all(desc[:, 2] + desc[:, 3] <= n))
        lr = self.lr_desc
        need_lr = lr[:, 5] + lr[:, 4] * (lr[:, 1] + lr[:, 3])
        need_d = self.d_desc[:, 4] + self.d_desc[:, 1] * self.d_desc[:, 3]
        ok = ok and np.all(lr[:, 4] >= 0) and np.all(lr[:, 5] >= 0)
        ok = ok and np.all(self.d_desc[:, 4] >= 0)
        ok = ok and (need_lr.max(initial=0) <= lr_size) and (need_d.max(initial=0) <= d_size)
        if ok:  # no two blocks overlap: paint them
            cover = np.zeros((m, n), dtype=np.int8) if m * n <= 1 << 26 else None
            if cover is not None:
                for r0, bm, c0, bn in desc:
                    cover[r0:r0 + bm, c0:c0 + bn] += 1
                ok = bool(np.all(cover == 1))
        for perm, size in ((self.row_perm, m), (self.col_perm, n)):
            if perm is not None:
                ok = ok and perm.shape == (size,) and np.array_equal(np.sort(perm), np.arange(size))
        if not ok:
            raise ValueError("the block descriptors do not tile the matrix (corrupt H-matrix data)")

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def T(self):
        return _Transposed(self)

    @property
    def nbytes(self) -> int:
        """Every byte stored: panels, Vt factors, descriptors, segment and offset tables,
        permutations and the product schedule. Not counted: the cast copy that a product with a
        vector of another dtype caches (``H`` float32 times float64 ``x`` computes in float64)."""
        arrays = [self.lr_desc, self.d_desc, *self._pn]
        arrays += [p for p in (self.row_perm, self.col_perm) if p is not None]
        return int(sum(a.nbytes for a in arrays)) + self._plan.nbytes

    @property
    def dense_nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    @property
    def compression_ratio(self) -> float:
        """``nbytes`` divided by the bytes of the dense matrix (smaller is better)."""
        return self.nbytes / self.dense_nbytes

    @property
    def ranks(self) -> np.ndarray:
        """Rank of every low-rank block."""
        return self.lr_desc[:, 4].copy()

    @property
    def max_rank(self) -> int:
        return int(self.lr_desc[:, 4].max(initial=0))

    @property
    def n_blocks(self) -> int:
        return len(self.lr_desc) + len(self.d_desc)

    @property
    def n_entries(self) -> int:
        """Number of stored matrix entries (factor entries plus dense entries)."""
        return int(self._pn.panel.size + self._pn.vt.size)

    def blocks(self) -> list[Block]:
        out = [Block("lowrank", int(r0), int(r0 + m), int(c0), int(c0 + n), int(k))
               for r0, m, c0, n, k, _ in self.lr_desc]
        out += [Block("dense", int(r0), int(r0 + m), int(c0), int(c0 + n), -1)
                for r0, m, c0, n, _ in self.d_desc]
        return out

    def _segments_of(self, item: int):
        """(chunk, pos, len) of every segment of a block (``b`` low rank, ``~b`` dense)."""
        if not hasattr(self, "_by_item"):
            seg = self._pn.seg
            chunk = np.repeat(np.arange(len(self._pn.chunks) - 1), np.diff(self._pn.seg_ptr))
            order = np.argsort(seg[:, 0], kind="stable")
            self._by_item = (seg[order, 0], chunk[order], seg[order, 3], seg[order, 2])
        items, chunk, pos, ln = self._by_item
        lo, hi = np.searchsorted(items, item), np.searchsorted(items, item, side="right")
        return zip(chunk[lo:hi], pos[lo:hi], ln[lo:hi], strict=True)

    def _rows_of(self, item: int, width: int, nrows: int) -> np.ndarray:
        """A block's row factor (``U`` or ``D``) gathered from the panels of its chunks."""
        pn = self._pn
        out = np.zeros((nrows, width), dtype=self.dtype)
        r0 = (self.lr_desc[item, 0] if item >= 0 else self.d_desc[~item, 0])
        for c, pos, ln in self._segments_of(item):
            lo, hi = pn.chunks[c], pn.chunks[c + 1]
            w = (pn.pan_off[c + 1] - pn.pan_off[c]) // (hi - lo)
            P = pn.panel[pn.pan_off[c]:pn.pan_off[c + 1]].reshape(hi - lo, w)
            out[lo - r0:hi - r0] = P[:, pos:pos + ln]
        return out

    def lowrank_factors(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """``(U, Vt)`` of low-rank block ``b`` (block = U @ Vt); ``Vt`` is a view, ``U`` a copy
        gathered from the row panels."""
        r0, m, c0, n, k, _ = self.lr_desc[b]
        vt = self._pn.vt[self._pn.vt_off[b]:self._pn.vt_off[b + 1]].reshape(k, n)
        return self._rows_of(int(b), int(k), int(m)), vt

    def dense_block(self, b: int) -> np.ndarray:
        """Dense block ``b`` (a copy gathered from the row panels)."""
        r0, m, c0, n, _ = self.d_desc[b]
        return self._rows_of(~int(b), int(n), int(m))

    @property
    def lr_data(self) -> np.ndarray:
        """Block form of the low-rank factors (``U``, ``Vt`` of each block at ``lr_desc[:, 5]``)."""
        lr = self.lr_desc
        size = int((lr[:, 5] + lr[:, 4] * (lr[:, 1] + lr[:, 3])).max(initial=0))
        out = np.zeros(size, dtype=self.dtype)
        for b, (_, m, _, n, k, off) in enumerate(lr):
            if k:
                u, vt = self.lowrank_factors(b)
                out[off:off + m * k] = u.ravel()
                out[off + m * k:off + m * k + k * n] = vt.ravel()
        return out

    @property
    def d_data(self) -> np.ndarray:
        """Block form of the dense blocks (row-major, at ``d_desc[:, 4]``)."""
        d = self.d_desc
        size = int((d[:, 4] + d[:, 1] * d[:, 3]).max(initial=0))
        out = np.zeros(size, dtype=self.dtype)
        for b, (_, m, _, n, off) in enumerate(d):
            out[off:off + m * n] = self.dense_block(b).ravel()
        return out

    def __repr__(self) -> str:
        return (f"HMatrix(shape={self.shape}, dtype={self.dtype}, blocks={self.n_blocks} "
                f"({len(self.lr_desc)} low-rank, {len(self.d_desc)} dense), "
                f"max_rank={self.max_rank}, storage={100 * self.compression_ratio:.1f}% of dense)")

    # ------------------------------------------------------------------ products
    def _data(self, dtype):
        """(panel, vt) in ``dtype``; a cast copy is cached for products in another dtype."""
        if dtype == self.dtype:
            return self._pn.panel, self._pn.vt
        if dtype not in self._cast_cache:
            self._cast_cache[dtype] = (self._pn.panel.astype(dtype), self._pn.vt.astype(dtype))
        return self._cast_cache[dtype]

    def _prepare(self, x, n_expected, name):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        if x.ndim not in (1, 2):
            raise ValueError(f"{name} must be a vector or a matrix, got {x.ndim} dimensions")
        if x.shape[0] != n_expected:
            raise ValueError(
                f"{name} has {x.shape[0]} rows but the H-matrix needs {n_expected} "
                f"(shape {self.shape})"
            )
        dtype = np.result_type(self.dtype, x.dtype)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        return x, dtype

    def matvec(self, x) -> np.ndarray:
        """``H @ x`` for a vector (n,) or a matrix (n, p); a matrix result is F-ordered (the
        kernels work on ``x.T`` so that every loop is a dot product over contiguous memory)."""
        if (type(x) is np.ndarray and x.dtype == self.dtype and x.ndim in (1, 2)
                and x.shape[0] == self.shape[1]):  # fast path: an array of H's dtype
            dtype = self.dtype
        else:
            x, dtype = self._prepare(x, self.shape[1], "x")
        cp, rp = self.col_perm, self.row_perm
        if x.ndim == 1:
            XT = np.ascontiguousarray(x if cp is None else x[cp], dtype=dtype).reshape(1, -1)
        else:
            XT = np.ascontiguousarray(x.T if cp is None else x.T[:, cp], dtype=dtype)
        p = XT.shape[0]
        YT = np.empty((p, self.shape[0]), dtype=dtype)
        if p > 0:
            panel, vt = self._data(dtype)
            pn, plan = self._pn, self._plan
            _kernels.product(panel, pn.pan_off, pn.chunks, pn.run_ptr, pn.runs, vt, pn.vt_off,
                             self.lr_desc, pn.t_off, plan.task_chunk, plan.task_ptr,
                             plan.task_lr, plan.shared, self._wmax, XT, YT, dtype.type(0),
                             self._work * p >= _kernels.PARALLEL_MIN_WORK)
        if rp is not None:
            out = np.empty_like(YT)
            out[:, rp] = YT
            YT = out
        return YT[0] if x.ndim == 1 else YT.T

    matmat = matvec

    def rmatvec(self, y) -> np.ndarray:
        """``H.T @ y`` for a vector (m,) or a matrix (m, p)."""
        y, dtype = self._prepare(y, self.shape[0], "y")
        panel, vt = self._data(dtype)
        if self.row_perm is not None:
            y = y[self.row_perm]
        yy = np.ascontiguousarray(y.reshape(self.shape[0], -1), dtype=dtype)
        out = np.empty((self.shape[1], yy.shape[1]), dtype=dtype)
        pn = self._pn
        _kernels.rmatmat(panel, pn.pan_off, pn.chunks, pn.seg_ptr, pn.seg, vt, pn.vt_off,
                         self.lr_desc, pn.t_off, yy, out)
        if self.col_perm is not None:
            res = np.empty_like(out)
            res[self.col_perm] = out
            out = res
        return out.reshape(-1) if y.ndim == 1 else out

    def __matmul__(self, x):
        return self.matvec(x)

    def __rmatmul__(self, x):
        """``x @ H`` = ``(H.T @ x.T).T`` for a vector or a matrix of row vectors."""
        x = np.asarray(x)
        return self.rmatvec(x) if x.ndim == 1 else self.rmatvec(x.T).T

    def to_dense(self) -> np.ndarray:
        """The full matrix in the original index order."""
        a = np.zeros(self.shape, dtype=self.dtype)
        pn = self._pn
        for c in range(len(pn.chunks) - 1):
            lo, hi = pn.chunks[c], pn.chunks[c + 1]
            w = (pn.pan_off[c + 1] - pn.pan_off[c]) // (hi - lo)
            P = pn.panel[pn.pan_off[c]:pn.pan_off[c + 1]].reshape(hi - lo, w)
            for item, src, ln, pos in pn.seg[pn.seg_ptr[c]:pn.seg_ptr[c + 1]]:
                if item >= 0:
                    c0, n, k = self.lr_desc[item, 2:5]
                    vt = pn.vt[pn.vt_off[item]:pn.vt_off[item + 1]].reshape(k, n)
                    a[lo:hi, c0:c0 + n] = P[:, pos:pos + ln] @ vt
                else:
                    a[lo:hi, src:src + ln] = P[:, pos:pos + ln]
        if self.row_perm is not None or self.col_perm is not None:
            rp = self.row_perm if self.row_perm is not None else np.arange(self.shape[0])
            cp = self.col_perm if self.col_perm is not None else np.arange(self.shape[1])
            out = np.empty_like(a)
            out[np.ix_(rp, cp)] = a
            a = out
        return a

    def aslinearoperator(self):
        """A :class:`scipy.sparse.linalg.LinearOperator` backed by the numba products."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(self.shape, matvec=self.matvec, rmatvec=self.rmatvec,
                              matmat=self.matvec, rmatmat=self.rmatvec, dtype=self.dtype)

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> None:
        """Write a versioned ``.npz`` file (no pickles)."""
        arrays = dict(lr_desc=self.lr_desc, lr_data=self.lr_data, d_desc=self.d_desc,
                      d_data=self.d_data, shape=np.asarray(self.shape, dtype=np.int64))
        if self.row_perm is not None:
            arrays["row_perm"] = self.row_perm
        if self.col_perm is not None:
            arrays["col_perm"] = self.col_perm
        meta = {"format": "hmat.HMatrix", "version": FORMAT_VERSION, "info": _jsonable(self.info)}
        np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        return repr(obj)


def load(path) -> HMatrix:
    """Read a file written by :meth:`HMatrix.save`; a foreign or corrupt file raises ValueError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            files = dict(f.items())
    except Exception as exc:  # zipfile / format errors
        raise ValueError(f"{path} is not a readable hmat .npz file: {exc}") from exc
    try:
        meta = json.loads(files.pop("meta").tobytes().decode())
    except Exception as exc:
        raise ValueError(f"{path} has no valid hmat metadata") from exc
    if meta.get("format") != "hmat.HMatrix":
        raise ValueError(f"{path} is not an hmat.HMatrix file (format={meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('version')}, this hmat reads {FORMAT_VERSION}"
        )
    missing = {"lr_desc", "lr_data", "d_desc", "d_data", "shape"} - set(files)
    if missing:
        raise ValueError(f"{path} lacks arrays {sorted(missing)}")
    return HMatrix(shape=tuple(files["shape"]), lr_desc=files["lr_desc"],
                   lr_data=files["lr_data"], d_desc=files["d_desc"], d_data=files["d_data"],
                   row_perm=files.get("row_perm"), col_perm=files.get("col_perm"),
                   info=meta.get("info", {}))


class _Transposed:
    """``H.T``: supports ``H.T @ y`` and ``shape``, nothing more."""

    def __init__(self, h: HMatrix):
        self._h = h
        self.shape = (h.shape[1], h.shape[0])
        self.dtype = h.dtype

    def __matmul__(self, y):
        return self._h.rmatvec(y)
