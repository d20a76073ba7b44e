"""Numba kernels for products with a quantized H-matrix (:class:`hmat.precision.QStore`).

Each stored column of a low-rank block (``U[:, i]``, ``Vt[i]``) and each stored row of a dense
block is read where it lies and applied to every vector: the matrix is never expanded to
float32 or float64. int8, float32 and float64 are read in place (int8 converted in the dot
product, its float32 scale applied to the result); bfloat16 and float16 are decoded into a small
per-thread buffer first: bfloat16 as the upper half of a float32 (a shift), float16 by moving
its exponent and mantissa into a float32 and multiplying by 2**112 (exact for normal and
subnormal values, which is all we store: float16 overflow is never chosen). Loops run over
slices (``a[j]``, ``x[j]`` with ``j`` from 0), which numba vectorises; indexing ``i8[off + j]``
did not vectorise (int8 rows of the MobileNetV2 classifier, one vector: 1.7 ms against
0.06 ms with slices).

Threads: ``prange`` over tasks, each a contiguous range of low-rank and of dense blocks of
about equal cost, with a private accumulator (``acc[t]``) summed afterwards, so no two threads
write the same entry. Vectors travel transposed: ``XT`` is ``(p, n)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_TWO112 = 2.0 ** 112


@njit(cache=True, fastmath=True)
def _decode(code, off, ln, scale, f64, f32, h16, i8, out, ubuf, zero):
    """``out[:ln]`` = the bfloat16 (code 2) or float16 (code 3) values at ``h16[off:]``."""
    if code == 2:
        for j in range(ln):
            ubuf[j] = np.uint32(h16[off + j]) << np.uint32(16)
    else:
        for j in range(ln):
            h = np.uint32(h16[off + j])
            ubuf[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | \
                ((h & np.uint32(0x7FFF)) << np.uint32(13))
    fv = ubuf.view(np.float32)
    if code == 2:
        for j in range(ln):
            out[j] = fv[j]
    else:
        for j in range(ln):
            out[j] = fv[j] * _TWO112


@njit(cache=True, fastmath=True)
def _dot(a, x, n, zero):
    s = zero
    for j in range(n):
        s += a[j] * x[j]
    return s


@njit(cache=True, fastmath=True)
def _axpy(t, a, y, n):
    for j in range(n):
        y[j] += t * a[j]


@njit(cache=True, fastmath=True)
def _term(a_in, s_in, a_out, s_out, V, c_in, n_in, acc, c_out, n_out, zero):
    """For every vector q: ``acc[q, out] += s_out a_out * (s_in a_in . V[q, in])``: one
    column of a low-rank block (forward: in = Vt row, out = U column; transposed: swapped)."""
    for q in range(V.shape[0]):
        t = _dot(a_in, V[q, c_in:c_in + n_in], n_in, zero) * s_in * s_out
        _axpy(t, a_out, acc[q, c_out:c_out + n_out], n_out)


@njit(cache=True, fastmath=True)
def _row(a, sc, V, c_in, n, acc, r, zero):
    """Forward, one dense row: ``acc[q, r] += sc a . V[q, in]``."""
    for q in range(V.shape[0]):
        acc[q, r] += _dot(a, V[q, c_in:c_in + n], n, zero) * sc


@njit(cache=True, fastmath=True)
def _row_t(a, sc, V, r, acc, c0, n):
    """Transposed, one dense row: ``acc[q, c0:c0+n] += V[q, r] sc a``."""
    for q in range(V.shape[0]):
        _axpy(V[q, r] * sc, a, acc[q, c0:c0 + n], n)


@njit(cache=True, fastmath=True)
def _lowrank(lr_blk, lr_col, lr_scale, f64, f32, h16, i8, b, V, acc, bu, bv, ub, zero,
             transposed):
    """Every stored column of low-rank block ``b``: int8/float32/float64 read in place,
    bfloat16/float16 decoded into the buffers first."""
    r0, m, c0, n, lo, hi = lr_blk[b, 0], lr_blk[b, 1], lr_blk[b, 2], lr_blk[b, 3], \
        lr_blk[b, 4], lr_blk[b, 5]
    # forward: in = (Vt row, columns c0..), out = (U column, rows r0..); transposed: swapped
    ci, ni, co, no = (r0, m, c0, n) if transposed else (c0, n, r0, m)
    for c in range(lo, hi):
        code, ou, ov = lr_col[c, 0], lr_col[c, 1], lr_col[c, 2]
        su, sv = zero + lr_scale[c, 0], zero + lr_scale[c, 1]
        oi, si, oo, so = (ou, su, ov, sv) if transposed else (ov, sv, ou, su)
        if code == 1:
            _term(i8[oi:oi + ni], si, i8[oo:oo + no], so, V, ci, ni, acc, co, no, zero)
        elif code == 4:
            _term(f32[oi:oi + ni], si, f32[oo:oo + no], so, V, ci, ni, acc, co, no, zero)
        elif code == 5:
            _term(f64[oi:oi + ni], si, f64[oo:oo + no], so, V, ci, ni, acc, co, no, zero)
        else:
            _decode(code, oi, ni, si, f64, f32, h16, i8, bv, ub, zero)
            _decode(code, oo, no, so, f64, f32, h16, i8, bu, ub, zero)
            _term(bv[:ni], si, bu[:no], so, V, ci, ni, acc, co, no, zero)


@njit(cache=True, fastmath=True)
def _dense(d_blk, d_row, d_scale, f64, f32, h16, i8, b, V, acc, bv, ub, zero, transposed):
    """Every stored row of dense block ``b``."""
    r0, m, c0, n, lo = d_blk[b, 0], d_blk[b, 1], d_blk[b, 2], d_blk[b, 3], d_blk[b, 4]
    for r in range(m):
        code, o = d_row[lo + r, 0], d_row[lo + r, 1]
        sc = zero + d_scale[lo + r]
        if code == 0:
            continue
        if code == 1:
            a8 = i8[o:o + n]
            if transposed:
                _row_t(a8, sc, V, r0 + r, acc, c0, n)
            else:
                _row(a8, sc, V, c0, n, acc, r0 + r, zero)
        elif code == 4:
            a32 = f32[o:o + n]
            if transposed:
                _row_t(a32, sc, V, r0 + r, acc, c0, n)
            else:
                _row(a32, sc, V, c0, n, acc, r0 + r, zero)
        elif code == 5:
            a64 = f64[o:o + n]
            if transposed:
                _row_t(a64, sc, V, r0 + r, acc, c0, n)
            else:
                _row(a64, sc, V, c0, n, acc, r0 + r, zero)
        else:
            _decode(code, o, n, sc, f64, f32, h16, i8, bv, ub, zero)
            if transposed:
                _row_t(bv[:n], sc, V, r0 + r, acc, c0, n)
            else:
                _row(bv[:n], sc, V, c0, n, acc, r0 + r, zero)


@njit(cache=True, parallel=True, fastmath=True)
def matmat(lr_blk, lr_col, lr_scale, d_blk, d_row, d_scale, f64, f32, h16, i8, lr_task,
           d_task, XT, acc, bu, bv, ub, zero):
    """``acc[t] (p, m) += H_t @ XT.T`` over the blocks of task ``t``."""
    for t in prange(acc.shape[0]):
        for b in range(lr_task[t], lr_task[t + 1]):
            _lowrank(lr_blk, lr_col, lr_scale, f64, f32, h16, i8, b, XT, acc[t], bu[t], bv[t],
                     ub[t], zero, False)
        for b in range(d_task[t], d_task[t + 1]):
            _dense(d_blk, d_row, d_scale, f64, f32, h16, i8, b, XT, acc[t], bv[t], ub[t], zero,
                   False)


@njit(cache=True, parallel=True, fastmath=True)
def rmatmat(lr_blk, lr_col, lr_scale, d_blk, d_row, d_scale, f64, f32, h16, i8, lr_task,
            d_task, YT, acc, bu, bv, ub, zero):
    """``acc[t] (p, n) += (H_t.T @ YT.T).T`` over the blocks of task ``t``."""
    for t in prange(acc.shape[0]):
        for b in range(lr_task[t], lr_task[t + 1]):
            _lowrank(lr_blk, lr_col, lr_scale, f64, f32, h16, i8, b, YT, acc[t], bu[t], bv[t],
                     ub[t], zero, True)
        for b in range(d_task[t], d_task[t + 1]):
            _dense(d_blk, d_row, d_scale, f64, f32, h16, i8, b, YT, acc[t], bv[t], ub[t], zero,
                   True)
