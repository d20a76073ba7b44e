"""The :class:`HMatrix`: packed storage of low-rank and dense blocks and its products.

All factors live in two flat arrays (row panels holding every dense block and every ``U``, and
the ``Vt`` factors) addressed by small integer tables (:mod:`hmat._layout`), so a 1000 x 1280
matrix with hundreds of blocks is a handful of NumPy arrays, not hundreds of Python objects.
Blocks are stored in the permuted index order of the row/column cluster trees; products permute
inside ``@``, so users always work in the original order. Build one with :func:`hmat.compress`
or :meth:`HMatrix.from_blocks`; save and load with :mod:`hmat.io`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from . import _kernels
from ._layout import Schedule, chunk_cost, pack_blocks, schedule, to_panels
from ._threads import blas_architecture, one_blas_thread

__all__ = ["HMatrix", "Block"]


class Block(NamedTuple):
    """One leaf of the block partition, in permuted indices; ``rank`` is -1 for dense blocks."""

    kind: str  # "lowrank" or "dense"
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    rank: int


def _gather_rows_t(x: np.ndarray, perm, dtype) -> np.ndarray:
    """``x`` (n,) or (n, p) in the tree's order, transposed to a C-contiguous (p, n) of
    ``dtype``: the layout every product kernel reads."""
    if x.ndim == 1:
        return np.ascontiguousarray(x if perm is None else x[perm], dtype=dtype).reshape(1, -1)
    return np.ascontiguousarray(x.T if perm is None else x.T[:, perm], dtype=dtype)


@functools.cache
def _gemm_max_mnk() -> int:
    """The GEMM row-piece limit for this process's BLAS (:func:`hmat._kernels.gemm_max_mnk`),
    read once: threadpoolctl is not consulted on every product."""
    return _kernels.gemm_max_mnk(blas_architecture())


def _scatter_columns(YT: np.ndarray, perm) -> np.ndarray:
    """A kernel's (p, m) result back in the original order (``perm`` None: unchanged)."""
    if perm is None:
        return YT
    out = np.empty_like(YT)
    out[:, perm] = YT
    return out


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

    # numpy hands ``x @ H`` (and other operators) over to HMatrix instead of failing inside
    __array_ufunc__ = None

    def __init__(self, shape, lr_desc, lr_data, d_desc, d_data, row_perm=None, col_perm=None,
                 info=None):
        self.shape = (int(shape[0]), int(shape[1]))
        lr_desc = np.asarray(lr_desc, dtype=np.int64).reshape(-1, 6)
        d_desc = np.asarray(d_desc, dtype=np.int64).reshape(-1, 5)
        # blocks in (row, column) order: the kernels' memory walk goes forward
        self.lr_desc = np.ascontiguousarray(lr_desc[np.lexsort((lr_desc[:, 2], lr_desc[:, 0]))])
        self.d_desc = np.ascontiguousarray(d_desc[np.lexsort((d_desc[:, 2], d_desc[:, 0]))])
        lr_data, d_data = np.asarray(lr_data), np.asarray(d_data)
        if lr_data.dtype != d_data.dtype or lr_data.dtype.kind != "f":
            raise TypeError("lr_data and d_data must share one floating dtype, got "
                            f"{lr_data.dtype} and {d_data.dtype}")
        self.row_perm = None if row_perm is None else np.asarray(row_perm, dtype=np.int64)
        self.col_perm = None if col_perm is None else np.asarray(col_perm, dtype=np.int64)
        self.info = dict(info or {})
        self._dtype = lr_data.dtype
        self._check_partition(lr_data.size, d_data.size)
        self._pn = to_panels(self.shape, self.lr_desc, lr_data.ravel(), self.d_desc,
                             d_data.ravel())
        # the block form's offsets are those that pack_blocks writes (lr_data/d_data, save)
        lr, d = self.lr_desc, self.d_desc
        sizes = lr[:, 4] * (lr[:, 1] + lr[:, 3])
        lr[:, 5] = np.cumsum(sizes) - sizes
        sizes = d[:, 1] * d[:, 3]
        d[:, 4] = np.cumsum(sizes) - sizes
        widths = np.diff(self._pn.pan_off) // np.maximum(np.diff(self._pn.chunks), 1)
        self._wmax = int(widths.max(initial=0))  # widest panel: the gather buffer's size
        sch = schedule(self._pn.chunks, chunk_cost(self._pn, self.lr_desc), self.lr_desc,
                       _kernels.N_TASKS)
        # the products' integer tables live in one array (the plan); these are views into it
        self._plan, v = _kernels.pack_plan(
            {**self._pn._asdict(), **sch._asdict(), "lr_desc": self.lr_desc}, self._wmax)
        self._pn = self._pn._replace(**{k: v[k] for k in self._pn._fields if k in v})
        self._schedule = Schedule(*(v[k] for k in Schedule._fields))
        self.lr_desc = v["lr_desc"]
        self._work = int(self._pn.panel.size + self._pn.vt.size)  # entries read per vector
        self._cast_cache: dict = {}
        self._args_cache: dict = {}

    @classmethod
    def from_blocks(cls, shape, lowrank=(), dense=(), *, row_perm=None, col_perm=None,
                    info=None, dtype=None) -> HMatrix:
        """An H-matrix from its leaves: ``lowrank = [(row_start, col_start, U, Vt), ...]`` and
        ``dense = [(row_start, col_start, D), ...]`` in permuted indices (``row_perm[p]`` is the
        original row at position ``p``); the blocks must tile the matrix exactly once."""
        lowrank, dense = list(lowrank), list(dense)
        if dtype is None:
            arrays = [b[2] for b in lowrank] + [b[2] for b in dense]
            dtype = np.result_type(*arrays) if arrays else np.float64
        lr_desc, lr_data, d_desc, d_data = pack_blocks(lowrank, dense, np.dtype(dtype))
        return cls(shape, lr_desc, lr_data, d_desc, d_data, row_perm, col_perm, info)

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
        vector of another dtype caches (``H`` float32 times float64 ``x`` computes in float64).
        The plan's tables are views (counted once), plus its header."""
        arrays = [self.lr_desc, self.d_desc, *self._pn]
        arrays += [p for p in (self.row_perm, self.col_perm) if p is not None]
        return (int(sum(a.nbytes for a in arrays)) + self._schedule.nbytes
                + 8 * _kernels.PLAN_HEADER)

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

    def block_form(self):
        """``(lr_desc, lr_data, d_desc, d_data)``: the exchange format (see :mod:`hmat._layout`)."""
        lowrank = [(r0, c0, *self.lowrank_factors(b))
                   for b, (r0, _, c0, _, _, _) in enumerate(self.lr_desc)]
        dense = [(r0, c0, self.dense_block(b)) for b, (r0, _, c0, _, _) in enumerate(self.d_desc)]
        return pack_blocks(lowrank, dense, self.dtype)

    @property
    def lr_data(self) -> np.ndarray:
        """Block form of the low-rank factors (``U``, ``Vt`` of each block at ``lr_desc[:, 5]``)."""
        return self.block_form()[1]

    @property
    def d_data(self) -> np.ndarray:
        """Block form of the dense blocks (row-major, at ``d_desc[:, 4]``)."""
        return self.block_form()[3]

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

    def _kernel_args(self, dtype):
        """The product kernel's arguments that do not depend on ``x`` (panels, ``Vt`` factors,
        the plan) and the zero of ``dtype``: built once per dtype, so a call packs nothing."""
        args = self._args_cache.get(dtype)
        if args is None:
            panel, vt = self._data(dtype)
            args = ((panel, vt, self._plan), dtype.type(0))
            self._args_cache[dtype] = args
        return args

    def matvec(self, x) -> np.ndarray:
        """``H @ x`` for a vector (n,) or a matrix (n, p). From ``GEMM_MIN_VECTORS`` vectors on,
        BLAS GEMMs on the blocks (C-ordered result); below, numba micro-kernels on ``x.T`` (every
        loop a dot product over contiguous memory; F-ordered result)."""
        if (type(x) is np.ndarray and x.dtype == self._dtype and x.ndim in (1, 2)
                and x.shape[0] == self.shape[1]):
            dtype, cast = self._dtype, False  # an array of H's dtype: no more checks
        else:
            x, dtype = self._prepare(x, self.shape[1], "x")
            cast = x.dtype != dtype
        if x.ndim == 2:
            return self._matmat(x, dtype)
        XT = (x if self.col_perm is None else x[self.col_perm]).reshape(1, -1)
        if cast or not XT.flags.c_contiguous:
            XT = np.ascontiguousarray(XT, dtype=dtype)
        YT = np.empty((1, self.shape[0]), dtype=dtype)
        static, zero = self._kernel_args(dtype)
        _kernels.product(*static, XT, YT, zero, self._work >= _kernels.PARALLEL_MIN_WORK)
        return YT[0] if self.row_perm is None else _scatter_columns(YT, self.row_perm)[0]

    def _matmat(self, x, dtype):
        """``H @ x`` for a matrix ``x`` (n, p) of checked shape: BLAS GEMMs from
        ``GEMM_MIN_VECTORS`` vectors on, else the micro-kernels on ``x.T``."""
        if x.shape[1] >= _kernels.GEMM_MIN_VECTORS:
            return self._matmat_blas(x, dtype)
        cp = self.col_perm
        XT = np.ascontiguousarray(x.T if cp is None else x.T[:, cp], dtype=dtype)
        p = XT.shape[0]
        YT = np.empty((p, self.shape[0]), dtype=dtype)
        if p > 0:
            static, zero = self._kernel_args(dtype)
            _kernels.product(*static, XT, YT, zero, self._work * p >= _kernels.PARALLEL_MIN_WORK)
        return _scatter_columns(YT, self.row_perm).T

    matmat = matvec

    def _matmat_blas(self, x, dtype):
        """``H @ x`` for many vectors on BLAS GEMMs (:func:`hmat._kernels.product_gemm`); the
        result is C-ordered like numpy's."""
        cp, rp = self.col_perm, self.row_perm
        X = np.ascontiguousarray(x if cp is None else x[cp], dtype=dtype)
        Y = np.empty((self.shape[0], X.shape[1]), dtype=dtype)
        static, _ = self._kernel_args(dtype)
        max_mnk = _gemm_max_mnk()
        if self._work * X.shape[1] >= _kernels.PARALLEL_MIN_WORK:
            with one_blas_thread():  # one BLAS thread inside each parallel task
                _kernels.product_gemm(*static, X, Y, True, max_mnk)
        else:
            _kernels.product_gemm(*static, X, Y, False, max_mnk)
        if rp is None:
            return Y
        out = np.empty_like(Y)
        out[rp] = Y
        return out

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

    # ------------------------------------------------------------------ save
    def save(self, path) -> None:
        """Write a versioned ``.npz`` file (no pickles); read it with :func:`hmat.load`."""
        from .io import save

        save(self, path)


class _Transposed:
    """``H.T``: supports ``H.T @ y``, ``y @ H.T`` and ``shape``, nothing more."""

    __array_ufunc__ = None

    def __init__(self, h: HMatrix):
        self._h = h
        self.shape = (h.shape[1], h.shape[0])
        self.dtype = h.dtype

    def __matmul__(self, y):
        return self._h.rmatvec(y)

    def __rmatmul__(self, x):
        """``x @ H.T`` = ``(H @ x.T).T``."""
        x = np.asarray(x)
        return self._h.matvec(x) if x.ndim == 1 else self._h.matvec(x.T).T
