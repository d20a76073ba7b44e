"""The :class:`HMatrix`: packed storage of low-rank and dense blocks, products, save/load.

All factors live in two flat arrays (``lr_data`` for low-rank ``U``/``Vt`` pairs, ``d_data`` for
dense blocks) addressed by small integer descriptor tables, so a 1000 x 1280 matrix with hundreds
of blocks is a handful of NumPy arrays, not hundreds of Python objects. Blocks are stored in the
permuted index order of the row/column cluster trees; products permute inside ``@``, so users
always work in the original order. Build one with :func:`hmat.compress`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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

    task_bounds: np.ndarray  # (n_tasks + 1,) row cuts
    task_ptr: np.ndarray  # CSR pointers into task_items
    task_items: np.ndarray  # blocks meeting each task's rows: b >= 0 low-rank, ~b dense
    shared: np.ndarray  # low-rank blocks that a cut crosses (their Vt x is computed first)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self))


def _row_cost(m, lr_desc, d_desc):
    """Work per row (entries read): dense rows n, U rows k, and each Vt spread over its rows."""
    diff = np.zeros(m + 1)
    k = lr_desc[:, 4]
    w = k + k * lr_desc[:, 3] / lr_desc[:, 1]
    for r0, stop, wt in ((lr_desc[:, 0], lr_desc[:, 0] + lr_desc[:, 1], w),
                         (d_desc[:, 0], d_desc[:, 0] + d_desc[:, 1], d_desc[:, 3])):
        np.add.at(diff, r0, wt)
        np.add.at(diff, stop, -wt)
    return np.cumsum(diff[:-1])


def _schedule(shape, lr_desc, d_desc, n_tasks: int) -> _Plan:
    """Cut the rows into at most ``n_tasks`` tasks of about equal work.

    A cut goes where no block crosses it when one lies close to the ideal place (within 15 % of a
    task's work); otherwise at the nearest block boundary, and the low-rank blocks that it crosses
    become ``shared``.
    """
    m = shape[0]
    starts = np.concatenate([lr_desc[:, 0], d_desc[:, 0]])
    stops = starts + np.concatenate([lr_desc[:, 1], d_desc[:, 1]])
    cum = np.concatenate([[0.0], np.cumsum(_row_cost(m, lr_desc, d_desc))])
    total = cum[-1]
    # rows where a cut crosses no block: count blocks with start < r < stop
    inside = np.zeros(m + 1, dtype=np.int64)
    np.add.at(inside, starts + 1, 1)
    np.add.at(inside, stops, -1)
    inside = np.cumsum(inside)
    bounds = np.unique(np.concatenate([[0, m], starts, stops]))
    free = bounds[inside[bounds] == 0]
    cuts = [0]
    for t in range(1, max(1, min(n_tasks, m))):
        target = total * t / n_tasks
        best = free[np.argmin(np.abs(cum[free] - target))]
        if abs(cum[best] - target) > 0.15 * total / n_tasks:
            best = bounds[np.argmin(np.abs(cum[bounds] - target))]
        if cuts[-1] < best < m:
            cuts.append(int(best))
    cuts.append(m)
    task_bounds = np.asarray(cuts, dtype=np.int64)
    items = np.concatenate([np.arange(len(lr_desc)), ~np.arange(len(d_desc))]).astype(np.int64)
    first = np.searchsorted(task_bounds, starts, side="right") - 1  # task holding the first row
    last = np.searchsorted(task_bounds, stops, side="left")  # one past the task of the last row
    counts = last - first
    task_of = np.repeat(first, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    order = np.argsort(task_of, kind="stable")  # within a task: storage order, low-rank first
    task_ptr = np.zeros(len(task_bounds), dtype=np.int64)
    np.add.at(task_ptr, task_of + 1, 1)
    shared = np.flatnonzero(counts[: len(lr_desc)] > 1).astype(np.int64)
    return _Plan(task_bounds, np.cumsum(task_ptr).astype(np.int64),
                 np.repeat(items, counts)[order].astype(np.int64), shared)


@dataclass(eq=False, repr=False)
class HMatrix:
    """An H-matrix approximation of an ``m x n`` matrix in packed storage.

    Supports ``H @ x`` (vector or matrix, numba kernels, parallel over row tasks), ``H.T @ y``
    via :meth:`rmatvec`, :meth:`to_dense`, :attr:`nbytes`, :meth:`save`, and
    :meth:`aslinearoperator`. The dtype of the result follows NumPy's promotion rules, so a
    float32 H-matrix times a float32 vector stays float32.
    """

    shape: tuple[int, int]
    lr_desc: np.ndarray  # (n_lowrank, 6) int64: r0, m, c0, n, k, off
    lr_data: np.ndarray
    d_desc: np.ndarray  # (n_dense, 5) int64: r0, m, c0, n, off
    d_data: np.ndarray
    row_perm: np.ndarray | None = None  # permuted position -> original row
    col_perm: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # how it was built; errors and bounds

    def __post_init__(self):
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        self.lr_desc = np.ascontiguousarray(self.lr_desc, dtype=np.int64).reshape(-1, 6)
        self.d_desc = np.ascontiguousarray(self.d_desc, dtype=np.int64).reshape(-1, 5)
        if self.lr_data.dtype != self.d_data.dtype:
            raise TypeError("lr_data and d_data must share one dtype")
        self._check_partition()
        # product schedule (hmat._kernels): t offsets, largest rank, row tasks for the threads
        self._t_off = np.concatenate([[0], np.cumsum(self.lr_desc[:, 4])]).astype(np.int64)
        self._kmax = int(self.lr_desc[:, 4].max(initial=0))
        self._plan = _schedule(self.shape, self.lr_desc, self.d_desc, _kernels.N_TASKS)
        self._work = int(self.lr_data.size + self.d_data.size)  # entries read per vector
        self._cast_cache: dict = {}

    def _check_partition(self):
        """The blocks must tile the matrix exactly once (guards load() against corrupt files)."""
        m, n = self.shape
        area = int(np.sum(self.lr_desc[:, 1] * self.lr_desc[:, 3]) +
                   np.sum(self.d_desc[:, 1] * self.d_desc[:, 3]))
        desc = np.concatenate([self.lr_desc[:, :4], self.d_desc[:, :4]])
        ok = (area == m * n and np.all(desc[:, 1] > 0) and np.all(desc[:, 3] > 0)
              and np.all(desc[:, 0] >= 0) and np.all(desc[:, 2] >= 0)
              and np.all(desc[:, 0] + desc[:, 1] <= m) and np.all(desc[:, 2] + desc[:, 3] <= n))
        need_lr = self.lr_desc[:, 5] + self.lr_desc[:, 4] * (self.lr_desc[:, 1] + self.lr_desc[:, 3])
        need_d = self.d_desc[:, 4] + self.d_desc[:, 1] * self.d_desc[:, 3]
        ok = ok and np.all(self.lr_desc[:, 4] >= 0)
        ok = ok and (need_lr.max(initial=0) <= self.lr_data.size)
        ok = ok and (need_d.max(initial=0) <= self.d_data.size)
        for perm, size in ((self.row_perm, m), (self.col_perm, n)):
            if perm is not None:
                ok = ok and perm.shape == (size,) and np.array_equal(np.sort(perm), np.arange(size))
        if not ok:
            raise ValueError("the block descriptors do not tile the matrix (corrupt H-matrix data)")

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> np.dtype:
        return self.lr_data.dtype

    @property
    def ndim(self) -> int:
        return 2

    @property
    def T(self):
        return _Transposed(self)

    @property
    def nbytes(self) -> int:
        """Every byte stored: factors, dense blocks, descriptors, permutations and the product
        schedule (task cuts and lists). Not counted: the cast copy that a product with a vector of
        another dtype caches (``H`` float32 times float64 ``x`` computes in float64)."""
        arrays = [self.lr_desc, self.lr_data, self.d_desc, self.d_data, self._t_off]
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
        return int(self.lr_data.size + self.d_data.size)

    def blocks(self) -> list[Block]:
        out = [Block("lowrank", int(r0), int(r0 + m), int(c0), int(c0 + n), int(k))
               for r0, m, c0, n, k, _ in self.lr_desc]
        out += [Block("dense", int(r0), int(r0 + m), int(c0), int(c0 + n), -1)
                for r0, m, c0, n, _ in self.d_desc]
        return out

    def lowrank_factors(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Views ``(U, Vt)`` of low-rank block ``b`` (block = U @ Vt)."""
        r0, m, c0, n, k, off = self.lr_desc[b]
        u = self.lr_data[off: off + m * k].reshape(m, k)
        vt = self.lr_data[off + m * k: off + m * k + k * n].reshape(k, n)
        return u, vt

    def dense_block(self, b: int) -> np.ndarray:
        r0, m, c0, n, off = self.d_desc[b]
        return self.d_data[off: off + m * n].reshape(m, n)

    def __repr__(self) -> str:
        return (f"HMatrix(shape={self.shape}, dtype={self.dtype}, blocks={self.n_blocks} "
                f"({len(self.lr_desc)} low-rank, {len(self.d_desc)} dense), "
                f"max_rank={self.max_rank}, storage={100 * self.compression_ratio:.1f}% of dense)")

    # ------------------------------------------------------------------ products
    def _data(self, dtype):
        if dtype == self.dtype:
            return self.lr_data, self.d_data
        if dtype not in self._cast_cache:
            self._cast_cache[dtype] = (self.lr_data.astype(dtype), self.d_data.astype(dtype))
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
        if not (type(x) is np.ndarray and x.dtype == self.dtype and x.ndim in (1, 2)
                and x.shape[0] == self.shape[1]):  # fast path above: an array of H's dtype
            x, _ = self._prepare(x, self.shape[1], "x")
        dtype = self.dtype if x.dtype == self.dtype else np.result_type(self.dtype, x.dtype)
        if dtype.kind != "f":
            dtype = np.dtype(np.float64)
        cp, rp = self.col_perm, self.row_perm
        if x.ndim == 1:
            XT = np.ascontiguousarray(x if cp is None else x[cp], dtype=dtype).reshape(1, -1)
        else:
            XT = np.ascontiguousarray(x.T if cp is None else x.T[:, cp], dtype=dtype)
        p = XT.shape[0]
        YT = np.empty((p, self.shape[0]), dtype=dtype)
        if p > 0:
            lr, d = self._data(dtype)
            plan = self._plan
            _kernels.product(self.lr_desc, lr, self.d_desc, d, self._t_off, plan.task_bounds,
                             plan.task_ptr, plan.task_items, plan.shared, self._kmax, XT, YT,
                             dtype.type(0), self._work * p >= _kernels.PARALLEL_MIN_WORK)
        if rp is not None:
            out = np.empty_like(YT)
            out[:, rp] = YT
            YT = out
        return YT[0] if x.ndim == 1 else YT.T

    matmat = matvec

    def rmatvec(self, y) -> np.ndarray:
        """``H.T @ y`` for a vector (m,) or a matrix (m, p)."""
        y, dtype = self._prepare(y, self.shape[0], "y")
        lr, d = self._data(dtype)
        if self.row_perm is not None:
            y = y[self.row_perm]
        yy = np.ascontiguousarray(y.reshape(self.shape[0], -1), dtype=dtype)
        out = np.empty((self.shape[1], yy.shape[1]), dtype=dtype)
        _kernels.rmatmat(self.lr_desc, lr, self.d_desc, d, yy, out)
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
        for b, (r0, m, c0, n, k, off) in enumerate(self.lr_desc):
            u, vt = self.lowrank_factors(b)
            a[r0: r0 + m, c0: c0 + n] = u @ vt
        for b, (r0, m, c0, n, off) in enumerate(self.d_desc):
            a[r0: r0 + m, c0: c0 + n] = self.dense_block(b)
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
