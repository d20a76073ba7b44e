"""Storage precision: float64, float32, bfloat16, float16 and int8 with scales.

Two levels:

* :func:`quantize` / :func:`dequantize` turn any matrix into a :class:`Quantized` (int8 with a
  float32 scale per row, per column or per tensor; bfloat16 as the upper 16 bits of float32;
  float16; float32; float64) whose ``nbytes`` counts what is stored, scales included.
* The adaptive choice for one block of an H-matrix (:func:`choose_lowrank`,
  :func:`choose_dense`): each column of a low-rank factor pair (``U[:, i]`` and ``Vt[i]``,
  carrying singular value ``s_i``) or each row of a dense block gets the cheapest storage
  (a column may also be dropped: a lower rank) such that the block's error, truncation and
  rounding together,
  measured exactly on the decoded values, stays within the block's share of the error budget.
  Small singular values tolerate coarse types, so precision per column is where the bytes go.

The storage of a whole H-matrix in these types is :class:`QStore` (flat tables and one buffer
per type, read by the numba kernels in :mod:`hmat._qkernels`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["STORAGES", "PRECISIONS", "Quantized", "quantize", "dequantize", "check_precision",
           "QStore", "QLeaf", "choose_lowrank", "choose_dense", "fixed_lowrank", "fixed_dense",
           "quantize_block", "share2", "pack_leaves"]

#: storage types, cheapest first; the code is the index used in the packed tables (0 = dropped)
STORAGES = ("int8", "bfloat16", "float16", "float32", "float64")
CODE = {"zero": 0, "int8": 1, "bfloat16": 2, "float16": 3, "float32": 4, "float64": 5}
ITEMSIZE = {0: 0, 1: 1, 2: 2, 3: 2, 4: 4, 5: 8}
#: what ``compress(..., precision=...)`` accepts
PRECISIONS = ("float64", "float32", "bfloat16", "float16", "int8", "adaptive")
_PER = ("row", "column", "tensor")
# table bytes of one stored column of a low-rank block (two float32 scales; a group of columns
# of one type adds 20) and of one dense row (a float32 scale; a run of rows of one type adds 20)
COL_OVERHEAD = 8
ROW_OVERHEAD = 4


def check_precision(precision) -> str:
    """The precision name, or a ValueError naming the argument and the allowed values."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))} "
                         f"(or None for the input's dtype), got {precision!r}")
    return precision


# ---------------------------------------------------------------- encode / decode
def _bf16_encode(a: np.ndarray) -> np.ndarray:
    """Round to nearest even bfloat16, stored as the upper 16 bits of float32 (uint16)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype(np.uint16)


def _bf16_decode(h: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _scales(a: np.ndarray, per: str) -> np.ndarray:
    """float32 int8 scales ``max|a| / 127`` per row (m, 1), column (1, n) or tensor (1, 1)."""
    axis = {"row": 1, "column": 0, "tensor": None}[per]
    amax = np.max(np.abs(a), axis=axis, keepdims=True) if a.size else np.zeros((1, 1))
    return (np.asarray(amax, dtype=np.float64) / 127.0).astype(np.float32).reshape(
        (a.shape[0], 1) if per == "row" else (1, a.shape[1]) if per == "column" else (1, 1))


def _encode(a: np.ndarray, storage: str, per: str):
    """``(data, scale)``: data in the storage's array type (float16 as uint16 bits), scale a
    float32 array for int8 and None otherwise; non-finite data (float16 overflow) stays."""
    if storage == "int8":
        scale = _scales(a, per)
        s = scale.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(s > 0, np.asarray(a, np.float64) / np.where(s > 0, s, 1.0), 0.0)
        return np.clip(np.rint(q), -127, 127).astype(np.int8), scale
    if storage == "bfloat16":
        return _bf16_encode(a), None
    if storage == "float16":
        with np.errstate(over="ignore"):
            return np.asarray(a).astype(np.float16).view(np.uint16), None
    if storage == "float32":
        return np.asarray(a, dtype=np.float32), None
    return np.asarray(a, dtype=np.float64), None


def _decode(data, scale, storage: str, dtype=np.float64) -> np.ndarray:
    if storage == "int8":
        return (data.astype(np.float64) * scale.astype(np.float64)).astype(dtype, copy=False)
    if storage == "bfloat16":
        return _bf16_decode(data).astype(dtype)
    if storage == "float16":
        return np.ascontiguousarray(data, dtype=np.uint16).view(np.float16).astype(dtype)
    return np.asarray(data).astype(dtype)


class Quantized(NamedTuple):
    """A matrix in one storage type: ``data`` (int8, uint16 bits for bfloat16/float16, float32,
    float64) and, for int8, float32 ``scale`` per row (m, 1), column (1, n) or tensor (1, 1)."""

    storage: str
    data: np.ndarray
    scale: np.ndarray | None
    per: str

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        """Bytes stored: the data and the scales."""
        return int(self.data.nbytes + (0 if self.scale is None else self.scale.nbytes))

    def dequantize(self, dtype=None) -> np.ndarray:
        """The values the storage represents, in float32 (float64 for float64 storage) or
        ``dtype``."""
        if dtype is None:
            dtype = np.float64 if self.storage == "float64" else np.float32
        return _decode(self.data, self.scale, self.storage, dtype)


def quantize(a, storage: str, per: str = "row") -> Quantized:
    """``a`` (a vector or a matrix) in ``storage`` ("int8", "bfloat16", "float16", "float32",
    "float64"); int8 takes one float32 scale ``max|a|/127`` per row, column or tensor
    (``per``; "row" is torch's per-output-channel scheme for a weight ``(out, in)``).

    Raises ValueError for an unknown storage or ``per``, non-finite input, or values that
    overflow float16.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(map(repr, STORAGES))}, "
                         f"got {storage!r}")
    if per not in _PER:
        raise ValueError(f"per must be one of {', '.join(map(repr, _PER))}, got {per!r}")
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"a must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"a must be a vector or a matrix, got {arr.ndim} dimensions")
    arr2 = arr.reshape(1, -1) if arr.ndim == 1 else arr
    if not np.all(np.isfinite(arr2)):
        raise ValueError("a contains non-finite entries (nan or inf)")
    data, scale = _encode(arr2, storage, per)
    if storage == "float16" and not np.all(np.isfinite(data.view(np.float16))):
        raise ValueError("a has entries beyond float16's range (|x| > 65504): use "
                         "'bfloat16' or 'int8'")
    if arr.ndim == 1:
        data = data.reshape(-1)
    return Quantized(storage, data, scale, per)


def dequantize(q: Quantized, dtype=None) -> np.ndarray:
    """The values a :class:`Quantized` represents (float32, or float64 for float64 storage)."""
    return q.dequantize(dtype)


# ---------------------------------------------------------------- one block's choice
class QLeaf(NamedTuple):
    """One leaf in quantized storage (permuted indices). Low rank: ``codes`` per column,
    ``u`` / ``vt`` lists of encoded columns / rows, ``scales`` (k, 2). Dense: ``codes`` per
    row, ``u`` the encoded rows, ``vt`` None, ``scales`` (m, 1). ``err2`` is the exact squared
    Frobenius error of the decoded block (nan if unknown)."""

    kind: str
    r0: int
    c0: int
    m: int
    n: int
    codes: np.ndarray
    u: list
    vt: list | None
    scales: np.ndarray
    err2: float

    def nbytes(self) -> int:
        per = COL_OVERHEAD if self.kind == "lowrank" else ROW_OVERHEAD
        size = self.m + self.n if self.kind == "lowrank" else self.n
        return int(sum(ITEMSIZE[int(c)] * size + per for c in self.codes if c))

    def decoded(self):
        """``(U, Vt)`` (low rank; dropped columns left out) or the dense block, float64."""
        names = {v: k for k, v in CODE.items()}
        if self.kind == "lowrank":
            keep = [i for i, c in enumerate(self.codes) if c]
            u = np.zeros((self.m, len(keep)))
            vt = np.zeros((len(keep), self.n))
            for j, i in enumerate(keep):
                st = names[int(self.codes[i])]
                u[:, j] = _decode(self.u[i], self.scales[i, 0], st).ravel()
                vt[j] = _decode(self.vt[i], self.scales[i, 1], st).ravel()
            return u, vt
        d = np.zeros((self.m, self.n))
        for r, c in enumerate(self.codes):
            if c:
                d[r] = _decode(self.u[r], self.scales[r, 0], names[int(c)]).ravel()
        return d


def _options(vectors: np.ndarray, per: str):
    """Encoded values and float64 decodings of every vector (rows of ``vectors``) in every
    storage: ``{storage: (data, scale, decoded)}``, with float16 overflow marked by inf."""
    out = {}
    for st in STORAGES:
        data, scale = _encode(vectors, st, per)
        dec = _decode(data, scale, st)
        out[st] = (data, scale, dec)
    return out


def _greedy(err2: np.ndarray, nbytes: np.ndarray, target: float) -> np.ndarray:
    """Multiple-choice knapsack by the convex-hull greedy: ``err2[i, o]`` and ``nbytes[i, o]``
    for item i in option o (options by increasing bytes; an infinite error rules an option
    out); the option per item, cheapest overall found, with ``sum err2 <= target`` (all items
    at their most accurate option if none is)."""
    k, n_opt = err2.shape
    start = np.argmax(np.isfinite(err2), axis=1)  # the cheapest allowed option of each item
    steps = []  # (slope, item, option, d_err)
    for i in range(k):
        cur = int(start[i])
        while True:  # walk the lower convex hull from the cheapest option
            best, best_slope = None, -1.0
            for o in range(n_opt):
                db = nbytes[i, o] - nbytes[i, cur]
                de = err2[i, cur] - err2[i, o]
                if db > 0 and de > 0 and np.isfinite(err2[i, o]):
                    slope = de / db
                    if slope > best_slope:
                        best, best_slope = o, slope
            if best is None:
                break
            steps.append((best_slope, i, best, err2[i, cur] - err2[i, best]))
            cur = best
    choice = start.astype(np.int64)
    rows = np.arange(k)
    total = float(np.sum(err2[rows, choice]))
    for _, i, o, de in sorted(steps, key=lambda s: -s[0]):
        if total <= target:  # the running difference may have cancelled: sum again
            total = float(np.sum(err2[rows, choice]))
            if total <= target:
                break
        choice[i] = o
        total -= de
    return choice


def _col_err2(a, b, da, db):
    """``||a b^T - (a - da)(b - db)^T||_F^2`` per column, without cancellation."""
    at = a - da
    na2, nb2 = np.sum(da * da, axis=0), np.sum(db * db, axis=0)
    return (na2 * np.sum(b * b, axis=0) + np.sum(at * at, axis=0) * nb2
            + 2.0 * np.sum(da * at, axis=0) * np.sum(b * db, axis=0))


def _lowrank_leaf(r0, c0, u, vt, codes, opts_u, opts_v):
    """A low-rank :class:`QLeaf` from per-column codes and the encoded options."""
    names = {v: k for k, v in CODE.items()}
    k = u.shape[1]
    us, vs, scales = [], [], np.ones((k, 2), dtype=np.float32)
    for i in range(k):
        c = int(codes[i])
        if c == 0:
            us.append(None)
            vs.append(None)
            continue
        st = names[c]
        du, su, _ = opts_u[st]
        dv, sv, _ = opts_v[st]
        us.append(np.ascontiguousarray(du[:, i]))
        vs.append(np.ascontiguousarray(dv[i]))
        if st == "int8":
            scales[i] = (su[0, i], sv[i, 0])
    return QLeaf("lowrank", r0, c0, u.shape[0], vt.shape[1], np.asarray(codes, np.int8),
                 us, vs, scales, np.nan)


def _balanced(u, vt):
    """Columns of ``u`` and rows of ``vt`` rescaled to equal norms (same product): keeps
    float16/bfloat16 values in range."""
    nu, nv = np.linalg.norm(u, axis=0), np.linalg.norm(vt, axis=1)
    d = np.where((nu > 0) & (nv > 0), np.sqrt(nv / np.where(nu > 0, nu, 1.0)), 1.0)
    return u * d, vt / d[:, None]


def _exact_err2(block, leaf: QLeaf) -> float:
    b = np.asarray(block, dtype=np.float64)
    if leaf.kind == "lowrank":
        u, vt = leaf.decoded()
        e = b - u @ vt
    else:
        e = b - leaf.decoded()
    return float(np.sum(e * e))


def choose_lowrank(block, r0: int, c0: int, share2: float, cap_bytes: float | None = None,
                   tries: int = 4, allow_f64: bool = True) -> QLeaf | None:
    """The cheapest low-rank storage of ``block`` (an array) whose exact error, truncation and
    rounding, is at most ``share2`` (squared Frobenius): from the block's SVD, each column
    (``sqrt(s_i) u_i``, ``sqrt(s_i) v_i``) is dropped or stored as int8 (scale per column of
    U / row of Vt), bfloat16, float16, float32 or float64, chosen by a convex-hull knapsack
    greedy on the per-column errors; checked exactly, retried with a tighter target if the
    columns' rounding errors do not add up as squares. None if no choice fits within
    ``cap_bytes``. ``allow_f64=False`` leaves float64 out (for a float32 result)."""
    b = np.asarray(block, dtype=np.float64)
    m, n = b.shape
    w, s, zt = np.linalg.svd(b, full_matrices=False)
    kmax = min(len(s), max(int((cap_bytes if cap_bytes is not None else m * n * 8) // (m + n)), 0))
    if kmax == 0:
        return None
    tail2 = float(np.sum(s[kmax:] ** 2))
    if tail2 > share2:
        return None
    rs = np.sqrt(s[:kmax])
    u, vt = w[:, :kmax] * rs, zt[:kmax] * rs[:, None]
    opts_u, opts_v = _options(u.T, "row"), _options(vt, "row")
    # opts_u were encoded row-wise on u.T: transpose back to columns of u
    opts_u = {st: (d.T, None if sc is None else sc.T, dec.T) for st, (d, sc, dec) in opts_u.items()}
    err2 = np.empty((kmax, len(STORAGES) + 1))
    nbytes = np.empty_like(err2)
    err2[:, 0], nbytes[:, 0] = s[:kmax] ** 2, 0.0
    for j, st in enumerate(STORAGES, start=1):
        e = _col_err2(u, vt.T, u - opts_u[st][2], (vt - opts_v[st][2]).T)
        err2[:, j] = np.where(np.isfinite(e), e, np.inf)
        nbytes[:, j] = ITEMSIZE[j] * (m + n) + COL_OVERHEAD
    if not allow_f64:
        err2[:, -1] = np.inf
    target = share2 - tail2
    for _ in range(tries):
        choice = _greedy(err2, nbytes, target)
        leaf = _lowrank_leaf(r0, c0, u, vt, choice, opts_u, opts_v)
        if cap_bytes is not None and leaf.nbytes() >= cap_bytes:
            return None
        e2 = _exact_err2(b, leaf)
        if e2 <= share2:
            return leaf._replace(err2=e2)
        target *= 0.5 * share2 / max(e2, share2)
    return None


def choose_dense(block, r0: int, c0: int, share2: float, allow_f64: bool = True) -> QLeaf:
    """The cheapest row-wise storage of a dense block with exact error at most ``share2``:
    each row stored as int8 (one scale per row), bfloat16, float16, float32 or float64 (an
    all-zero row is not stored; rows are disjoint, so their squared errors add up exactly)."""
    b = np.asarray(block, dtype=np.float64)
    m, n = b.shape
    opts = _options(b, "row")
    err2 = np.empty((m, len(STORAGES) + 1))
    nbytes = np.empty_like(err2)
    # a row is stored (in some precision) unless it is zero: dropping rows would be pruning
    err2[:, 0], nbytes[:, 0] = np.where(np.any(b != 0, axis=1), np.inf, 0.0), 0.0
    for j, st in enumerate(STORAGES, start=1):
        d = b - opts[st][2]
        e = np.sum(d * d, axis=1)
        err2[:, j] = np.where(np.isfinite(e), e, np.inf)
        nbytes[:, j] = ITEMSIZE[j] * n + ROW_OVERHEAD
    if not allow_f64:
        err2[:, -1] = np.inf
    choice = _greedy(err2, nbytes, share2)
    leaf = _dense_leaf(r0, c0, b, choice, opts)
    return leaf._replace(err2=_exact_err2(b, leaf))


def _dense_leaf(r0, c0, b, codes, opts):
    names = {v: k for k, v in CODE.items()}
    rows, scales = [], np.ones((b.shape[0], 1), dtype=np.float32)
    for r, c in enumerate(codes):
        if c == 0:
            rows.append(None)
            continue
        data, sc, _ = opts[names[int(c)]]
        rows.append(np.ascontiguousarray(data[r]))
        if sc is not None:
            scales[r, 0] = sc[r, 0]
    return QLeaf("dense", r0, c0, b.shape[0], b.shape[1], np.asarray(codes, np.int8), rows,
                 None, scales, np.nan)


def fixed_lowrank(u, vt, r0: int, c0: int, storage: str) -> QLeaf:
    """Factors ``u``, ``vt`` with every column in one storage (int8: scale per column of U and
    per row of Vt; columns rebalanced to equal norms first)."""
    u, vt = _balanced(np.asarray(u, np.float64), np.asarray(vt, np.float64))
    du, su = _encode(u.T, storage, "row")
    opts_u = {storage: (du.T, None if su is None else su.T, None)}
    opts_v = {storage: (*_encode(vt, storage, "row"), None)}
    _check_range(storage, opts_u[storage][0], opts_v[storage][0])
    codes = np.full(u.shape[1], CODE[storage], dtype=np.int8)
    return _lowrank_leaf(r0, c0, u, vt, codes, opts_u, opts_v)


def fixed_dense(d, r0: int, c0: int, storage: str) -> QLeaf:
    """A dense block with every row in one storage (int8: one scale per row)."""
    b = np.asarray(d, np.float64)
    data, scale = _encode(b, storage, "row")
    _check_range(storage, data)
    codes = np.full(b.shape[0], CODE[storage], dtype=np.int8)
    return _dense_leaf(r0, c0, b, codes, {storage: (data, scale, None)})


def share2(tol: float, norm2: float, dtype) -> float:
    """A block's squared error share ``(tol ||A_b||_F)^2`` less room for rounding the decoded
    block once to ``dtype`` (float32: ``||A_b - fl(H_b)|| <= ||A_b - H_b|| + u (1 + tol)
    ||A_b||`` with ``u = 2**-24``), so that the bound also holds for ``to_dense()``."""
    u = 2.0 ** -24 if np.dtype(dtype) == np.float32 else 0.0
    return max(tol - u * (1.0 + tol), 0.0) ** 2 * norm2


def quantize_block(r0: int, c0: int, precision: str, *, factors=None, dense=None, block=None,
                   budget2: float | None = None, allow_f64: bool = True) -> QLeaf:
    """One leaf in ``precision``. "adaptive": the cheaper of :func:`choose_dense` and
    :func:`choose_lowrank` for ``block`` within ``budget2`` (ValueError if none fits); a
    storage name: ``factors=(U, Vt)`` or ``dense`` in that storage, with the exact error when
    ``block`` (the values it approximates) is given."""
    if precision == "adaptive":
        q = choose_dense(block, r0, c0, budget2, allow_f64=allow_f64)
        lr = choose_lowrank(block, r0, c0, budget2, cap_bytes=q.nbytes(), allow_f64=allow_f64)
        q = lr if lr is not None else q
        if not q.err2 <= budget2:
            raise ValueError("precision='adaptive': no storage meets the tolerance "
                             f"{'in float32' if not allow_f64 else ''} (use a larger tol)")
        return q
    q = (fixed_lowrank(*factors, r0, c0, precision) if factors is not None
         else fixed_dense(dense, r0, c0, precision))
    return q if block is None else q._replace(err2=_exact_err2(block, q))


def _check_range(storage, *datas):
    if storage == "float16" and not all(np.all(np.isfinite(d.view(np.float16))) for d in datas):
        raise ValueError("precision='float16': the matrix has entries beyond float16's range "
                         "(|x| > 65504); use 'bfloat16', 'int8' or 'adaptive'")


# ---------------------------------------------------------------- packed storage
class QStore(NamedTuple):
    """Quantized H-matrix storage.

    Low rank: ``lr_blk`` (B, 6) int32 ``(r0, m, c0, n, grp_lo, grp_hi)``; the columns of a
    block are grouped by storage type, ``lr_grp`` (G, 5) int32 ``(code, off_u, off_v,
    col_lo, col_hi)`` with ``U_g^T`` (k_g x m, row-major: the columns of ``U_g``) at ``off_u``
    and ``Vt_g`` (k_g x n, row-major) at ``off_v`` of the code's buffer, and ``lr_scale``
    (C, 2) float32 the scales of each column of ``U`` and row of ``Vt`` (1 for float types).
    Dense: ``d_blk`` (D, 6) ``(r0, m, c0, n, run_lo, run_hi)``; runs of consecutive rows of
    one type, ``d_run`` (U, 5) ``(code, off, row, count, scale_lo)``: rows ``row .. row+count``
    of the block, row-major at ``off`` (code 0: zero rows, not stored), their scales at
    ``d_scale[scale_lo:]``.
    Buffers: ``f64``, ``f32``, ``h16`` (bfloat16 and float16 bits) and ``i8``. Groups and runs
    keep the tables small: 8 bytes of scales per column, 4 per dense row (per-column and
    per-row tables took 20 and 12 bytes: 37 % on top of a 32-entry int8 row)."""

    lr_blk: np.ndarray
    lr_grp: np.ndarray
    lr_scale: np.ndarray
    d_blk: np.ndarray
    d_run: np.ndarray
    d_scale: np.ndarray
    f64: np.ndarray
    f32: np.ndarray
    h16: np.ndarray
    i8: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self))

    def bytes_by_storage(self) -> dict:
        """Data bytes per storage type (scales and tables not included)."""
        names = {v: k for k, v in CODE.items()}
        out = dict.fromkeys(STORAGES, 0)
        blk = np.repeat(np.arange(len(self.lr_blk)), self.lr_blk[:, 5] - self.lr_blk[:, 4])
        g = self.lr_grp
        grp_size = (g[:, 4] - g[:, 3]) * (self.lr_blk[blk, 1] + self.lr_blk[blk, 3])
        dblk = np.repeat(np.arange(len(self.d_blk)), self.d_blk[:, 5] - self.d_blk[:, 4])
        run_size = self.d_run[:, 3] * self.d_blk[dblk, 3]
        for codes, sizes in ((g[:, 0], grp_size), (self.d_run[:, 0], run_size)):
            for c in np.unique(codes):
                if c:
                    out[names[int(c)]] += int(np.sum(sizes[codes == c]) * ITEMSIZE[int(c)])
        return out


_BUF = {1: "i8", 2: "h16", 3: "h16", 4: "f32", 5: "f64"}
_BUF_DTYPE = {"f64": np.float64, "f32": np.float32, "h16": np.uint16, "i8": np.int8}


def pack_leaves(leaves) -> QStore:
    """Pack :class:`QLeaf` objects into a :class:`QStore` (dropped columns left out, the
    columns of a block grouped by storage type)."""
    bufs = {k: [] for k in _BUF_DTYPE}
    fill = dict.fromkeys(_BUF_DTYPE, 0)

    def put(code, arr):
        key = _BUF[code]
        arr = np.ascontiguousarray(arr).ravel()
        if arr.dtype != _BUF_DTYPE[key]:
            raise TypeError(f"storage code {code} holds {_BUF_DTYPE[key]}, got {arr.dtype}")
        off = fill[key]
        bufs[key].append(arr)
        fill[key] += arr.size
        return off

    lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale = [], [], [], [], [], []
    for lf in leaves:
        if lf.kind == "lowrank":
            g_lo = len(lr_grp)
            for code in sorted({int(c) for c in lf.codes if c}):
                cols = [i for i, c in enumerate(lf.codes) if c == code]
                u = np.stack([lf.u[i] for i in cols], axis=0)  # U_g^T: (k_g, m)
                vt = np.stack([lf.vt[i] for i in cols], axis=0)  # (k_g, n)
                c_lo = len(lr_scale)
                lr_scale.extend(lf.scales[i] for i in cols)
                lr_grp.append((code, put(code, u), put(code, vt), c_lo, len(lr_scale)))
            lr_blk.append((lf.r0, lf.m, lf.c0, lf.n, g_lo, len(lr_grp)))
        else:
            run_lo, codes = len(d_run), [int(c) for c in lf.codes]
            r = 0
            while r < lf.m:  # runs of rows of one storage type
                end = r + 1
                while end < lf.m and codes[end] == codes[r]:
                    end += 1
                off = put(codes[r], np.stack(lf.u[r:end])) if codes[r] else 0
                d_run.append((codes[r], off, r, end - r, len(d_scale)))
                d_scale.extend(lf.scales[r:end, 0])
                r = end
            d_blk.append((lf.r0, lf.m, lf.c0, lf.n, run_lo, len(d_run)))
    if max(fill.values(), default=0) >= 2**31:
        raise ValueError("the quantized storage exceeds 2**31 entries of one type")

    def table(rows, width, dtype=np.int32):
        return np.asarray(rows, dtype=dtype).reshape(-1, width)

    return QStore(
        table(lr_blk, 6), table(lr_grp, 5), table(lr_scale, 2, np.float32),
        table(d_blk, 6), table(d_run, 5), np.asarray(d_scale, np.float32).reshape(-1),
        *(np.concatenate(bufs[k]) if bufs[k] else np.zeros(0, _BUF_DTYPE[k])
          for k in ("f64", "f32", "h16", "i8")))
