"""Low-rank compressors with one signature: ``compressor(block, accuracy) -> LowRank``.

One :class:`Accuracy` decides the rank for every compressor (H2Lib's ``findrank`` in a few lines):
a fixed rank, or a relative / absolute tolerance in the Frobenius or spectral norm, optionally
capped by ``max_rank``. ``block`` is a NumPy array or an :class:`EntryBlock` (``shape``,
``row(i)``, ``col(j)``, ``dense()``). Each compressor says what it reads (``needs``): ``"block"``
(forms the whole block) or ``"entries"`` (reads rows and columns only, never the block).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import scipy.linalg

__all__ = ["Accuracy", "LowRank", "Compressor", "EntryBlock", "TruncatedSVD", "RRQR", "ACA",
           "COMPRESSORS", "get_compressor", "frobenius_tail", "recompress"]


def frobenius_tail(sq: np.ndarray) -> np.ndarray:
    """``err[k] = sqrt(sum_{i >= k} sq[i])`` for k = 0..len(sq): the Frobenius error of keeping
    the first k terms, given the squared singular values (or squared row norms of R)."""
    sq = np.asarray(sq, dtype=np.float64)
    return np.append(np.sqrt(np.maximum(np.cumsum(sq[::-1])[::-1], 0.0)), 0.0)


class LowRank(NamedTuple):
    """Low-rank factors of a block: ``block ~ u @ vt`` with ``u`` (m, k) and ``vt`` (k, n)."""

    u: np.ndarray
    vt: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.u.shape[0]), int(self.vt.shape[1]))

    def to_dense(self) -> np.ndarray:
        return self.u @ self.vt

    @classmethod
    def zero(cls, m: int, n: int, dtype=np.float64) -> LowRank:
        return cls(np.zeros((m, 0), dtype), np.zeros((0, n), dtype))


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

    def errors(self, s: np.ndarray) -> np.ndarray:
        """Error of the rank-k truncation for k = 0..len(s), in this accuracy's norm, from the
        singular values ``s`` (Eckart-Young-Mirsky)."""
        s = np.asarray(s, dtype=np.float64)
        return frobenius_tail(s * s) if self.norm == "fro" else np.append(s, 0.0)

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


def _check_real(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")


class Compressor(Protocol):
    """``compressor(block, accuracy) -> LowRank``; ``needs`` is ``"block"`` or ``"entries"``."""

    needs: str

    def __call__(self, block, accuracy: Accuracy) -> LowRank: ...


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


def _factor_block(block, accuracy: Accuracy, factor) -> LowRank:
    """Form the block and factor it with ``factor(a, accuracy)``; an empty block has rank 0."""
    a = _dense(block)
    if a.size == 0:
        return LowRank.zero(*a.shape, a.dtype)
    return factor(a, accuracy)


def recompress(lr: LowRank, accuracy: Accuracy, dtype=None) -> LowRank:
    """Truncate factors ``u @ vt`` to the accuracy by a small QR + SVD (cost ~ (m + n) k^2):
    the best approximation of ``u @ vt`` of each rank, and its exact error in either norm."""
    u, vt = lr
    dtype = np.dtype(dtype or u.dtype)
    m, n = lr.shape
    if lr.rank == 0:
        return LowRank.zero(m, n, dtype)
    qu, ru = np.linalg.qr(u.astype(np.float64))
    qv, rv = np.linalg.qr(vt.T.astype(np.float64))
    w, s, zt = np.linalg.svd(ru @ rv.T)
    err = accuracy.errors(s)
    k = accuracy.choose_rank(err, err[0] if accuracy.norm == "fro" else s[0], (m, n), dtype)
    return LowRank((qu @ (w[:, :k] * s[:k])).astype(dtype), (zt[:k] @ qv.T).astype(dtype))


@dataclass(frozen=True)
class TruncatedSVD:
    """Truncated SVD of the whole block: the best approximation of each rank
    (Eckart-Young-Mirsky); honours both norms exactly."""

    needs = "block"

    def __call__(self, block, accuracy: Accuracy) -> LowRank:
        return _factor_block(block, accuracy, self._factor)

    @staticmethod
    def _factor(a, accuracy):
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        err = accuracy.errors(s)
        k = accuracy.choose_rank(err, err[0] if accuracy.norm == "fro" else float(s[0]),
                                 a.shape, a.dtype)
        return LowRank((u[:, :k] * s[:k]).astype(a.dtype, copy=False), vt[:k].copy())


@dataclass(frozen=True)
class RRQR:
    """Rank-revealing (column-pivoted) QR, ``A P = Q R``; the Frobenius error of truncating after
    ``k`` rows of R is exactly the norm of R's trailing rows; in the spectral norm ``|R_kk|``
    is an estimate of the (k+1)-th singular value."""

    needs = "block"

    def __call__(self, block, accuracy: Accuracy) -> LowRank:
        return _factor_block(block, accuracy, self._factor)

    @staticmethod
    def _factor(a, accuracy):
        n = a.shape[1]
        q, r, piv = scipy.linalg.qr(a, mode="economic", pivoting=True)
        r64 = r.astype(np.float64)
        if accuracy.norm == "fro":
            err = frobenius_tail(np.sum(r64**2, axis=1))
        else:
            err = np.append(np.abs(np.diag(r64)), 0.0)
        k = accuracy.choose_rank(err, err[0], a.shape, a.dtype)
        vt = np.empty((k, n), dtype=a.dtype)
        vt[:, piv] = r[:k]
        return LowRank(q[:, :k].copy(), vt)


@dataclass(frozen=True)
class ACA:
    """Adaptive cross approximation with partial pivoting (Bebendorf), then recompression.

    Reads one row and one column of the block per step; never forms the block. The cross phase
    stops when ``||u_k|| ||v_k|| <= tol ||S_k||_F`` (the usual Frobenius estimate), at its rank
    limit, or when every row has been tried (zero pivots are skipped, never used). With
    ``recompress`` (default) the cross phase runs to ``oversample`` times the requested rank (or
    to half the tolerance) and the factors are then truncated by a QR + SVD to the requested
    rank (or the other half): close to the truncated SVD where the spectrum decays, at ACA's
    cost. Oversampling 3 (default): on a 256 x 256 matrix with singular values ``exp(-i/8)`` at
    rank 10, oversampling 2 gave 1.27x the SVD's error, 3 gave 1.015x.
    ``recompress=False`` is the plain cross approximation (the thesis' ACA). The error estimate
    is a Frobenius one: a tolerance in the spectral norm is rejected.
    """

    recompress: bool = True
    oversample: float = 3.0
    needs = "entries"

    def __post_init__(self):
        _check_real("oversample", self.oversample)
        if self.oversample < 1.0:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}")

    def check(self, accuracy: Accuracy) -> None:
        """Reject what ACA cannot honour (called by :func:`hmat.compress` before any block)."""
        if accuracy.rank is None and accuracy.norm != "fro":
            raise ValueError("ACA estimates its error in the Frobenius norm: use norm='fro' "
                             "with a tolerance (or method='svd' for the spectral norm)")

    def __call__(self, block, accuracy: Accuracy) -> LowRank:
        self.check(accuracy)
        m, n = block.shape
        dtype = np.dtype(block.dtype)
        if m == 0 or n == 0:
            return LowRank.zero(m, n, dtype)
        limit = min(m, n)
        for cap in (accuracy.rank, accuracy.max_rank):
            if cap is not None:
                limit = min(limit, math.ceil(cap * self.oversample) if self.recompress else cap)
        rtol = accuracy.rtol
        if self.recompress and rtol is not None:
            rtol = 0.5 * rtol  # half the budget for the cross phase, half for the truncation
        atol = None if accuracy.atol is None else accuracy.atol * (0.5 if self.recompress else 1)
        u, v = _cross(block, limit, None if accuracy.rank is not None else rtol,
                      None if accuracy.rank is not None else atol)
        lr = LowRank(u, v.T)
        if not self.recompress:
            return LowRank(u.astype(dtype), np.ascontiguousarray(v.T, dtype=dtype))
        if accuracy.rank is None:
            accuracy = Accuracy(rtol=None if accuracy.rtol is None else 0.5 * accuracy.rtol,
                                atol=atol, max_rank=accuracy.max_rank)
        return recompress(lr, accuracy, dtype)


def _cross(block, maxk: int, rtol: float | None, atol: float | None):
    """The cross phase of ACA: factors ``U`` (m, k), ``V`` (n, k) in float64, block ~ U V^T."""
    m, n = block.shape
    if isinstance(block, np.ndarray):
        get_row, get_col = (lambda i: block[i]), (lambda j: block[:, j])
    else:
        get_row, get_col = block.row, block.col
    U = np.zeros((m, maxk), dtype=np.float64)
    V = np.zeros((n, maxk), dtype=np.float64)
    k = 0
    row_used = np.zeros(m, dtype=bool)
    col_used = np.zeros(n, dtype=bool)
    norm2 = 0.0  # ||S_k||_F^2 of the current approximation, updated incrementally
    scale = 0.0  # largest |entry| seen: decides when a pivot counts as zero
    eps = np.finfo(block.dtype).eps
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
        if rtol is not None and step <= rtol * math.sqrt(norm2):
            break
        if atol is not None and step <= atol:
            break
        i = int(np.argmax(np.where(row_used, -1.0, np.abs(col))))
    return U[:, :k], V[:, :k]


COMPRESSORS: dict[str, Compressor] = {"svd": TruncatedSVD(), "rrqr": RRQR(), "qr": RRQR(),
                                      "aca": ACA()}


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
