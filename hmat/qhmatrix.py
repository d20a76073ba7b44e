"""An :class:`~hmat.HMatrix` whose blocks are stored in low precision (:mod:`hmat.precision`).

Same interface as :class:`~hmat.HMatrix` (products, ``to_dense``, ``nbytes``, blocks, factors,
save/load); the storage is a :class:`hmat.precision.QStore`, each low-rank column and dense row
in its own type (int8 with scales, bfloat16, float16, float32, float64), decoded inside the
product kernels (:mod:`hmat._qkernels`). Built by ``hmat.compress(A, ..., precision=...)``.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads

from . import _qkernels
from .hmatrix import HMatrix, _gather_rows_t, _scatter_columns
from .precision import (
    ITEMSIZE,
    QStore,
    _bf16_decode,
    check_precision,
    pack_leaves,
    quantize_block,
    share2,
)

__all__ = ["QuantizedHMatrix"]

# below this many stored bytes times vectors a product runs on the calling thread: a parallel
# launch costs ~40 us (an 8 x 8 int8 matrix, one vector: 50 us through prange, 10 us without)
_PARALLEL_MIN_BYTES = 1 << 20

_FIELDS = {"lr_blk": (np.int32, 2), "lr_grp": (np.int32, 2), "lr_scale": (np.float32, 2),
           "d_blk": (np.int32, 2), "d_run": (np.int32, 2), "d_scale": (np.float32, 1),
           "f64": (np.float64, 1), "f32": (np.float32, 1), "h16": (np.uint16, 1),
           "i8": (np.int8, 1)}


class QuantizedHMatrix(HMatrix):
    """An H-matrix in quantized storage; ``dtype`` (float32 or float64) is the type that
    ``to_dense`` and products return, ``precision`` the name it was built with."""

    def __init__(self, shape, store: QStore, dtype=np.float32, row_perm=None, col_perm=None,
                 info=None, precision="adaptive"):
        self.shape = (int(shape[0]), int(shape[1]))
        self._q = QStore(*(np.ascontiguousarray(a) for a in store))
        for name, a in self._q._asdict().items():
            want, ndim = _FIELDS[name]
            if a.dtype != want or a.ndim != ndim:
                raise ValueError(f"quantized storage field {name} must be {np.dtype(want)} "
                                 f"with {ndim} dimension(s), got {a.dtype} {a.shape} "
                                 "(corrupt data)")
        self._dtype = np.dtype(dtype)
        if self._dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self._dtype}")
        self.precision = precision
        self.row_perm = None if row_perm is None else np.asarray(row_perm, dtype=np.int64)
        self.col_perm = None if col_perm is None else np.asarray(col_perm, dtype=np.int64)
        self.info = dict(info or {})
        q = self._q
        if len(q.lr_blk) and (q.lr_blk.shape[1] != 6 or q.lr_grp.shape[1] != 5
                              or np.any(q.lr_blk[:, 4] > q.lr_blk[:, 5])
                              or q.lr_blk[:, 4].min() < 0 or q.lr_blk[:, 5].max() > len(q.lr_grp)):
            raise ValueError("the quantized storage's block table is corrupt")
        cols = q.lr_grp[:, 4].astype(np.int64) - q.lr_grp[:, 3] if len(q.lr_grp) else \
            np.zeros(0, np.int64)
        cum = np.concatenate([[0], np.cumsum(cols)])
        ks = (cum[q.lr_blk[:, 5]] - cum[q.lr_blk[:, 4]]).astype(np.int64)
        self.lr_desc = np.column_stack([q.lr_blk[:, :4].astype(np.int64), ks,
                                        np.zeros(len(ks), np.int64)]).reshape(-1, 6)
        self.d_desc = np.column_stack([q.d_blk[:, :4].astype(np.int64),
                                       np.zeros(len(q.d_blk), np.int64)]).reshape(-1, 5)
        self._check_store()
        self._tasks = {}
        self._nbytes = self.nbytes

    @classmethod
    def from_hmatrix(cls, H: HMatrix, precision: str, tol: float | None = None):
        """``H``'s blocks in ``precision`` ("bfloat16", "float16", "int8", or "adaptive" with
        ``tol``: per block the cheapest storage within ``tol ||H_b||_F``, so that
        ``||H - result||_F <= tol ||H||_F``); ``info["rel_error_fro"]`` is relative to ``H``.
        For example a trained layer's factors stored in low precision at export."""
        precision = check_precision(precision)
        if precision in ("float32", "float64"):
            raise ValueError(f"precision={precision!r} is a plain HMatrix: use "
                             "HMatrix.from_blocks with dtype=, or compress(..., precision=)")
        if precision == "adaptive" and (tol is None or not 0 < tol < 1):
            raise ValueError(f"precision='adaptive' needs tol in (0, 1), got {tol!r}")
        dtype = np.float64 if precision == "adaptive" and tol < 1e-6 else np.float32
        leaves, err2, norm2 = [], 0.0, 0.0
        for b, (r0, _, c0, _, _, _) in enumerate(H.lr_desc):
            u, vt = (f.astype(np.float64) for f in H.lowrank_factors(b))
            block = u @ vt
            nb2 = float(np.sum(block * block))
            leaves.append(quantize_block(int(r0), int(c0), precision, factors=(u, vt),
                                         block=block, budget2=None if tol is None else
                                         share2(tol, nb2, dtype), allow_f64=dtype == np.float64))
            err2, norm2 = err2 + leaves[-1].err2, norm2 + nb2
        for b, (r0, _, c0, _, _) in enumerate(H.d_desc):
            block = H.dense_block(b).astype(np.float64)
            nb2 = float(np.sum(block * block))
            leaves.append(quantize_block(int(r0), int(c0), precision, dense=block, block=block,
                                         budget2=None if tol is None else
                                         share2(tol, nb2, dtype), allow_f64=dtype == np.float64))
            err2, norm2 = err2 + leaves[-1].err2, norm2 + nb2
        info = dict(H.info, precision=precision, tol_precision=tol,
                    rel_error_fro=float(np.sqrt(err2 / norm2)) if norm2 else 0.0,
                    source="QuantizedHMatrix.from_hmatrix")
        return cls(H.shape, pack_leaves(leaves), dtype, H.row_perm, H.col_perm, info, precision)

    def _check_store(self):
        """Blocks tile the matrix, offsets lie in their buffers (guards load())."""
        q, m, n = self._q, *self.shape
        desc = np.concatenate([self.lr_desc[:, :4], self.d_desc[:, :4]])
        ok = (desc.size == 0 or (np.all(desc[:, [1, 3]] > 0) and np.all(desc[:, [0, 2]] >= 0)
              and np.all(desc[:, 0] + desc[:, 1] <= m) and np.all(desc[:, 2] + desc[:, 3] <= n)))
        ok = ok and int(np.sum(desc[:, 1] * desc[:, 3])) == m * n
        if ok:
            cover = np.zeros((m, n), dtype=np.int8)
            for r0, bm, c0, bn in desc:
                cover[r0:r0 + bm, c0:c0 + bn] += 1
            ok = bool(np.all(cover == 1))
        g = q.lr_grp
        ok = ok and len(g) == (len(q.lr_blk) and int(q.lr_blk[-1, 5]))
        ok = ok and (len(g) == 0 or (np.all(g[:, 3] <= g[:, 4]) and g[:, 3].min() >= 0
                                     and g[:, 4].max() <= len(q.lr_scale)))
        d, u = q.d_blk, q.d_run
        ok = ok and d.shape[1] == 6 and u.shape[1] == 5 and len(u) == (len(d) and int(d[-1, 5]))
        ok = ok and (len(d) == 0 or (np.all(d[:, 4] <= d[:, 5]) and d[:, 4].min() >= 0))
        if ok and len(u):  # runs cover their block's rows in order, scales in range
            first = np.zeros(len(u), bool)
            first[d[d[:, 5] > d[:, 4], 4]] = True
            prev_end = np.concatenate([[0], u[:-1, 2] + u[:-1, 3]])
            ok = ok and np.all(np.where(first, u[:, 2] == 0, u[:, 2] == prev_end))
            ok = ok and np.all(u[:, 3] > 0) and np.all(u[:, 4] >= 0)
            ok = ok and np.all(u[:, 4] + u[:, 3] <= len(q.d_scale))
            ends = np.add.reduceat(u[:, 3], d[d[:, 5] > d[:, 4], 4])
            ok = ok and np.array_equal(ends, d[d[:, 5] > d[:, 4], 1]) and np.all(
                d[d[:, 5] == d[:, 4], 1] == 0)
            ok = ok and np.all((u[:, 0] >= 0) & (u[:, 0] <= 5))
        if ok:  # every stored group and row lies inside its buffer
            size = {1: q.i8.size, 2: q.h16.size, 3: q.h16.size, 4: q.f32.size, 5: q.f64.size}
            blk = np.repeat(np.arange(len(q.lr_blk)), q.lr_blk[:, 5] - q.lr_blk[:, 4])
            k = g[:, 4].astype(np.int64) - g[:, 3]
            ok = ok and np.all((g[:, 0] >= 1) & (g[:, 0] <= 5))
            for off, ln in ((g[:, 1], k * q.lr_blk[blk, 1]), (g[:, 2], k * q.lr_blk[blk, 3])):
                for c, lim in size.items():
                    sel = g[:, 0] == c
                    ok = ok and np.all(off[sel] >= 0) and np.all(off[sel] + ln[sel] <= lim)
            if len(u):
                run_blk = np.repeat(np.arange(len(d)), d[:, 5] - d[:, 4])
                ln = u[:, 3].astype(np.int64) * d[run_blk, 3]
                for c, lim in size.items():
                    sel = u[:, 0] == c
                    ok = ok and np.all(u[sel, 1] >= 0) and np.all(u[sel, 1] + ln[sel] <= lim)
        for perm, size_ in ((self.row_perm, m), (self.col_perm, n)):
            if perm is not None:
                ok = ok and perm.shape == (size_,) and np.array_equal(np.sort(perm),
                                                                       np.arange(size_))
        if not ok:
            raise ValueError("the quantized storage does not describe the matrix (corrupt data)")

    # ------------------------------------------------------------------ properties
    @property
    def store(self) -> QStore:
        return self._q

    @property
    def nbytes(self) -> int:
        """Every byte stored: encoded values, scales, tables and permutations."""
        perms = sum(p.nbytes for p in (self.row_perm, self.col_perm) if p is not None)
        return int(self._q.nbytes + perms)

    @property
    def dense_nbytes(self) -> int:
        """Bytes of the dense matrix in float32 (the reference a quantized matrix is compared
        with)."""
        return self.shape[0] * self.shape[1] * 4

    @property
    def n_entries(self) -> int:
        q = self._q
        cols = int(np.sum(self.lr_desc[:, 4] * (self.lr_desc[:, 1] + self.lr_desc[:, 3])))
        blk = np.repeat(np.arange(len(q.d_blk)), q.d_blk[:, 5] - q.d_blk[:, 4])
        rows = (q.d_run[:, 3] * q.d_blk[blk, 3])[q.d_run[:, 0] > 0]
        return int(cols + rows.sum())

    def bytes_by_storage(self) -> dict:
        """Bytes of encoded values per storage type (scales and tables not included)."""
        return self._q.bytes_by_storage()

    def __repr__(self) -> str:
        by = {k: v for k, v in self.bytes_by_storage().items() if v}
        return (f"QuantizedHMatrix(shape={self.shape}, precision={self.precision!r}, "
                f"dtype={self.dtype}, blocks={self.n_blocks}, bytes={self.nbytes} "
                f"({100 * self.nbytes / self.dense_nbytes:.1f}% of dense float32), "
                f"by storage={by})")

    # ------------------------------------------------------------------ decoding
    def _vector(self, code, off, ln, scale) -> np.ndarray:
        q = self._q
        if code == 1:
            return q.i8[off:off + ln].astype(np.float64) * np.float64(scale)
        if code == 2:
            return _bf16_decode(q.h16[off:off + ln]).astype(np.float64)
        if code == 3:
            return q.h16[off:off + ln].view(np.float16).astype(np.float64)
        if code == 4:
            return q.f32[off:off + ln].astype(np.float64)
        if code == 5:
            return q.f64[off:off + ln].copy()
        return np.zeros(ln)

    def _factors64(self, b: int):
        q = self._q
        r0, m, c0, n, lo, hi = (int(v) for v in q.lr_blk[b])
        us, vts = [np.zeros((m, 0))], [np.zeros((0, n))]
        for code, ou, ov, c_lo, c_hi in q.lr_grp[lo:hi]:
            k = int(c_hi - c_lo)
            sc = q.lr_scale[c_lo:c_hi].astype(np.float64)
            us.append(self._vector(code, ou, k * m, 1.0).reshape(k, m).T * sc[:, 0])
            vts.append(self._vector(code, ov, k * n, 1.0).reshape(k, n) * sc[:, 1:])
        return np.hstack(us), np.vstack(vts)

    def _dense64(self, b: int):
        q = self._q
        r0, m, c0, n, lo, hi = (int(v) for v in q.d_blk[b])
        out = np.zeros((m, n))
        for code, off, row, count, s_lo in q.d_run[lo:hi]:
            sc = q.d_scale[s_lo:s_lo + count].astype(np.float64)[:, None]
            out[row:row + count] = self._vector(code, off, count * n, 1.0).reshape(count, n) * sc
        return out

    def lowrank_factors(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """``(U, Vt)`` of low-rank block ``b``, decoded (in ``dtype``)."""
        u, vt = self._factors64(int(b))
        return u.astype(self.dtype), vt.astype(self.dtype)

    def dense_block(self, b: int) -> np.ndarray:
        """Dense block ``b``, decoded (in ``dtype``)."""
        return self._dense64(int(b)).astype(self.dtype)

    def to_dense(self, dtype=None) -> np.ndarray:
        """The matrix the stored values represent (decoded and multiplied in float64, then
        rounded once to ``dtype``, default :attr:`dtype`), in the original index order."""
        a = np.zeros(self.shape)
        for b, (r0, m, c0, n, _, _) in enumerate(self._q.lr_blk):
            u, vt = self._factors64(b)
            a[r0:r0 + m, c0:c0 + n] = u @ vt
        for b, (r0, m, c0, n, _, _) in enumerate(self._q.d_blk):
            a[r0:r0 + m, c0:c0 + n] = self._dense64(b)
        if self.row_perm is not None or self.col_perm is not None:
            rp = self.row_perm if self.row_perm is not None else np.arange(self.shape[0])
            cp = self.col_perm if self.col_perm is not None else np.arange(self.shape[1])
            out = np.empty_like(a)
            out[np.ix_(rp, cp)] = a
            a = out
        return a.astype(self.dtype if dtype is None else dtype, copy=False)

    # ------------------------------------------------------------------ products
    def _task_split(self, n_tasks: int):
        """Contiguous ranges of low-rank and of dense blocks of about equal stored bytes."""
        if n_tasks not in self._tasks:
            q = self._q
            per_item = np.array([ITEMSIZE[c] for c in range(6)])
            g = q.lr_grp
            blk = np.repeat(np.arange(len(q.lr_blk)), q.lr_blk[:, 5] - q.lr_blk[:, 4])
            grp_cost = per_item[g[:, 0]] * (g[:, 4] - g[:, 3]).astype(np.int64) * (
                q.lr_blk[blk, 1] + q.lr_blk[blk, 3])
            cum = np.concatenate([[0], np.cumsum(grp_cost)])
            lr_cost = cum[q.lr_blk[:, 5]] - cum[q.lr_blk[:, 4]]
            blk = np.repeat(np.arange(len(q.d_blk)), q.d_blk[:, 5] - q.d_blk[:, 4])
            run_cost = per_item[q.d_run[:, 0]] * q.d_run[:, 3] * q.d_blk[blk, 3].astype(np.int64)
            cum = np.concatenate([[0], np.cumsum(run_cost)])
            d_cost = cum[q.d_blk[:, 5]] - cum[q.d_blk[:, 4]]

            def split(cost):
                cum = np.cumsum(cost)
                total = cum[-1] if len(cum) else 0
                cuts = np.searchsorted(cum, total * np.arange(1, n_tasks) / n_tasks, "right")
                return np.concatenate([[0], cuts, [len(cost)]]).astype(np.int64)

            self._tasks[n_tasks] = (split(lr_cost), split(d_cost))
        return self._tasks[n_tasks]

    def _buffer_size(self) -> int:
        """Per-thread buffer of decoded values: the largest bfloat16/float16 group
        ``(m + n) k`` or dense row."""
        if not hasattr(self, "_bufsz"):
            q = self._q
            blk = np.repeat(np.arange(len(q.lr_blk)), q.lr_blk[:, 5] - q.lr_blk[:, 4])
            k = (q.lr_grp[:, 4] - q.lr_grp[:, 3]).astype(np.int64)
            half = (q.lr_grp[:, 0] == 2) | (q.lr_grp[:, 0] == 3)
            grp = k * (q.lr_blk[blk, 1] + q.lr_blk[blk, 3]).astype(np.int64)
            w = max(int(grp[half].max(initial=0)), int(q.d_blk[:, 3].max(initial=0))) + 1
            self._bufsz = w
        return self._bufsz

    def _run(self, XT, out_len, transposed):
        q = self._q
        p = XT.shape[0]
        dtype = XT.dtype
        n_tasks = get_num_threads() if self._nbytes * p >= _PARALLEL_MIN_BYTES else 1
        lr_task, d_task = self._task_split(n_tasks)
        acc = np.zeros((n_tasks, p, out_len), dtype=dtype)
        w = self._buffer_size()
        bu = np.empty((n_tasks, w), dtype=dtype)
        ub = np.empty((n_tasks, w), dtype=np.uint32)
        kernel = _qkernels.product if n_tasks == 1 else _qkernels.product_parallel
        kernel(q.lr_blk, q.lr_grp, q.lr_scale, q.d_blk, q.d_run, q.d_scale, q.f64, q.f32, q.h16,
               q.i8, lr_task, d_task, XT, acc, bu, ub, dtype.type(0), transposed)
        return acc[0] if n_tasks == 1 else acc.sum(axis=0)

    def matvec(self, x) -> np.ndarray:
        """``H @ x`` for a vector (n,) or a matrix (n, p), decoding inside the kernel."""
        x, dtype = self._prepare(x, self.shape[1], "x")
        YT = self._run(_gather_rows_t(x, self.col_perm, dtype), self.shape[0], False)
        YT = _scatter_columns(YT, self.row_perm)
        return YT[0] if x.ndim == 1 else YT.T

    matmat = matvec

    def __matmul__(self, x):  # spelled out: the float HMatrix's product path may change
        return self.matvec(x)

    def __rmatmul__(self, x):
        """``x @ H`` = ``(H.T @ x.T).T`` for a vector or a matrix of row vectors."""
        x = np.asarray(x)
        return self.rmatvec(x) if x.ndim == 1 else self.rmatvec(x.T).T

    def rmatvec(self, y) -> np.ndarray:
        """``H.T @ y`` for a vector (m,) or a matrix (m, p)."""
        y, dtype = self._prepare(y, self.shape[0], "y")
        XT = self._run(_gather_rows_t(y, self.row_perm, dtype), self.shape[1], True)
        XT = _scatter_columns(XT, self.col_perm)
        return XT[0] if y.ndim == 1 else XT.T

