"""Low-rank compressors with one signature: ``compressor(block, accuracy) -> (U, V)``, block ~ UV^T.

One :class:`Accuracy` decides the rank for every compressor (H2Lib's ``findrank`` in a few lines):
a fixed rank, or a relative / absolute tolerance in the Frobenius or spectral norm, optionally
capped by ``max_rank``. ``block`` is a NumPy array or anything with ``shape``, ``row(i)``,
``col(j)`` and ``dense()`` (see :class:`EntryBlock`); ACA only ever asks for rows and columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg

__all__ = ["Accuracy", "Compressor", "EntryBlock", "svd", "rrqr", "aca", "COMPRESSORS",
           "get_compressor"]


@dataclass(frozen=True)
class Accuracy:
    """How accurate a low-rank block must be: exactly one of ``rank``, ``rtol``, ``atol``.

    ``norm`` is ``"fro"`` (Frobenius) or ``"2"`` (spectral). ``max_rank`` caps any choice.
    With ``rtol`` in the Frobenius norm, every block satisfies ``||B - UV^T||_F <= rtol ||B||_F``,
    hence the whole matrix satisfies ``||A - H||_F <= rtol ||A||_F``.
    """

    rank: int | None = None
    rtol: float | None = None
    atol: float | None = None
    norm: str = "fro"
    max_rank: int | None = None

    def __post_init__(self):
        given = [n for n in ("rank", "rtol", "atol") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                f"Accuracy needs exactly one of rank, rtol, atol; got {given or 'none'}"
            )
        for name in ("rank", "max_rank"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TypeError(f"{name} must be a positive integer, got {v!r}")
                if v <= 0:
                    raise ValueError(f"{name} must be a positive integer (>= 1), got {v}")
        if self.rtol is not None:
            _check_real("tol", self.rtol)
            if not 0.0 < self.rtol < 1.0:
                raise ValueError(f"tol must lie in the open interval (0, 1), got {self.rtol}")
        if self.atol is not None:
            _check_real("atol", self.atol)
            if not self.atol > 0.0:
                raise ValueError(f"atol must be a finite number > 0, got {self.atol}")
        if self.norm not in ("fro", "2"):
            raise ValueError(f"norm must be 'fro' or '2', got {self.norm!r}")

    def choose_rank(self, err: np.ndarray, norm: float, shape, dtype) -> int:
        """Smallest rank ``k`` whose error ``err[k]`` (error of the rank-k truncation, in this
        accuracy's norm; ``err[-1] == 0``) meets the accuracy; numerically zero tails are cut."""
        r = len(err) - 1
        negligible = np.finfo(dtype).eps * max(shape) * norm
        k_num = int(np.argmax(err <= negligible)) if r > 0 else 0  # numerical rank
        if self.rank is not None:
            k = min(self.rank, k_num)
        else:
            thresh = self.rtol * norm if self.rtol is not None else self.atol
            k = min(int(np.argmax(err <= thresh)), k_num)
        if self.max_rank is not None:
            k = min(k, self.max_rank)
        return k

    def threshold(self, norm: float) -> float:
        """The error allowed for a block of the given norm (0 for a fixed rank)."""
        if self.rtol is not None:
            return self.rtol * norm
        if self.atol is not None:
            return self.atol
        return 0.0


def _check_real(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")


class Compressor(Protocol):
    def __call__(self, block, accuracy: Accuracy) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True, eq=False)
class EntryBlock:
    """A block of a matrix given only by an entry function ``entries(rows, cols) -> array``.

    ``rows``/``cols`` are the block's original indices. ACA reads single rows and columns; the
    other compressors call :meth:`dense`, which forms only this block, never the whole matrix.
    """

    entries: Callable[[np.ndarray, np.ndarray], np.ndarray]
    rows: np.ndarray
    cols: np.ndarray
    dtype: np.dtype

    @property
    def shape(self):
        return (len(self.rows), len(self.cols))

    def row(self, i: int) -> np.ndarray:
        return np.asarray(self.entries(self.rows[i : i + 1], self.cols), self.dtype).reshape(-1)

    def col(self, j: int) -> np.ndarray:
        return np.asarray(self.entries(self.rows, self.cols[j : j + 1]), self.dtype).reshape(-1)

    def dense(self) -> np.ndarray:
        out = np.asarray(self.entries(self.rows, self.cols), self.dtype)
        return out.reshape(self.shape)


def _dense(block) -> np.ndarray:
    return block if isinstance(block, np.ndarray) else block.dense()


def _empty(m, n, dtype):
    return np.zeros((m, 0), dtype), np.zeros((n, 0), dtype)


def svd(block, accuracy: Accuracy):
    """Truncated SVD: the best approximation of each rank (Eckart-Young-Mirsky)."""
    a = _dense(block)
    m, n = a.shape
    if m == 0 or n == 0:
        return _empty(m, n, a.dtype)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    s64 = s.astype(np.float64)
    if accuracy.norm == "fro":
        tail = np.sqrt(np.maximum(np.cumsum((s64**2)[::-1])[::-1], 0.0))
        err = np.append(tail, 0.0)
        norm = err[0]
    else:
        err = np.append(s64, 0.0)
        norm = s64[0]
    k = accuracy.choose_rank(err, norm, a.shape, a.dtype)
    return (u[:, :k] * s[:k]).astype(a.dtype, copy=False), vt[:k].T.copy()


def rrqr(block, accuracy: Accuracy):
    """Rank-revealing (column-pivoted) QR, ``A P = Q R``; the Frobenius error of truncating after
    ``k`` rows of R is exactly the norm of R's trailing rows."""
    a = _dense(block)
    m, n = a.shape
    if m == 0 or n == 0:
        return _empty(m, n, a.dtype)
    q, r, piv = scipy.linalg.qr(a, mode="economic", pivoting=True)
    r64 = r.astype(np.float64)
    if accuracy.norm == "fro":
        rows2 = np.sum(r64**2, axis=1)
        tail = np.sqrt(np.maximum(np.cumsum(rows2[::-1])[::-1], 0.0))
        err = np.append(tail, 0.0)
        norm = err[0]
    else:  # |R_kk| estimates sigma_{k+1}
        err = np.append(np.abs(np.diag(r64)), 0.0)
        norm = err[0]
    k = accuracy.choose_rank(err, norm, a.shape, a.dtype)
    vt = np.empty((k, n), dtype=a.dtype)
    vt[:, piv] = r[:k]
    return q[:, :k].copy(), vt.T.copy()


def aca(block, accuracy: Accuracy):
    """Adaptive cross approximation with partial pivoting (Bebendorf).

    Reads one row and one column of the block per step; never forms the block. Stops when
    ``||u_k|| ||v_k|| <= tol * ||S_k||_F`` (the usual Frobenius estimate), at the fixed rank, or
    when every row has been tried (rank-deficient blocks: zero pivots are skipped, never used).
    """
    m, n = block.shape
    dtype = block.dtype
    if m == 0 or n == 0:
        return _empty(m, n, dtype)
    if isinstance(block, np.ndarray):
        get_row, get_col = (lambda i: block[i]), (lambda j: block[:, j])
    else:
        get_row, get_col = block.row, block.col
    maxk = min(m, n)
    if accuracy.rank is not None:
        maxk = min(maxk, accuracy.rank)
    if accuracy.max_rank is not None:
        maxk = min(maxk, accuracy.max_rank)
    U = np.zeros((m, maxk), dtype=np.float64)
    V = np.zeros((n, maxk), dtype=np.float64)
    k = 0
    row_used = np.zeros(m, dtype=bool)
    col_used = np.zeros(n, dtype=bool)
    norm2 = 0.0  # ||S_k||_F^2 of the current approximation, updated incrementally
    scale = 0.0  # largest |entry| seen: decides when a pivot counts as zero
    eps = np.finfo(dtype).eps
    i = 0
    while k < maxk and not row_used.all():
        row = np.asarray(get_row(i), dtype=np.float64) - V[:, :k] @ U[i, :k]
        row_used[i] = True
        scale = max(scale, float(np.max(np.abs(row), initial=0.0)))
        cand = np.where(col_used, 0.0, np.abs(row))
        j = int(np.argmax(cand))
        if cand[j] == 0.0 or cand[j] <= 100 * eps * scale:
            # this residual row is (numerically) zero: try the next unused row
            i = int(np.argmin(row_used))
            continue
        col = np.asarray(get_col(j), dtype=np.float64) - U[:, :k] @ V[j, :k]
        col_used[j] = True
        v_new = row / row[j]
        cross = float((U[:, :k].T @ col) @ (V[:, :k].T @ v_new))
        nu2, nv2 = float(col @ col), float(v_new @ v_new)
        norm2 = max(norm2 + 2.0 * cross + nu2 * nv2, 0.0)
        U[:, k] = col
        V[:, k] = v_new
        k += 1
        step = math.sqrt(nu2 * nv2)
        if accuracy.rank is None:
            if accuracy.rtol is not None and step <= accuracy.rtol * math.sqrt(norm2):
                break
            if accuracy.atol is not None and step <= accuracy.atol:
                break
        i = int(np.argmax(np.where(row_used, -1.0, np.abs(col))))
    return U[:, :k].astype(dtype), V[:, :k].astype(dtype)


COMPRESSORS: dict[str, Compressor] = {"svd": svd, "rrqr": rrqr, "qr": rrqr, "aca": aca}


def get_compressor(method) -> Compressor:
    """``method`` is a name in :data:`COMPRESSORS` or a callable with the compressor signature."""
    if callable(method) and not isinstance(method, str):
        return method
    try:
        return COMPRESSORS[method]
    except (KeyError, TypeError):
        raise ValueError(
            f"method must be one of {sorted(COMPRESSORS)} or a callable, got {method!r}"
        ) from None
