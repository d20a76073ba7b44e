"""Numba kernels for products with a quantized H-matrix (:class:`hmat.precision.QStore`).

Each stored column of a low-rank block (``U[:, i]``, ``Vt[i]``) and each stored row of a dense
block is decoded into a small per-thread buffer right before it is used, then applied to every
vector: the matrix is never expanded to float32 or float64. Decoding: int8 times its float32
scale; bfloat16 as the upper half of a float32 (a shift); float16 by moving its exponent and
mantissa into a float32 and multiplying by 2**112 (exact for normal and subnormal values, which
is all we store: float16 overflow is never chosen); float32/float64 as they are.

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
    """``out[:ln]`` = the stored values (times ``scale``) of one column or row, computed in
    the type of ``zero`` (int8 times a float32 scale is exact in float64)."""
    if code == 1:
        sc = zero + scale
        for j in range(ln):
            out[j] = i8[off + j] * sc
    elif code == 2:
        for j in range(ln):
            ubuf[j] = np.uint32(h16[off + j]) << np.uint32(16)
        fv = ubuf.view(np.float32)
        for j in range(ln):
            out[j] = fv[j]
    elif code == 3:
        for j in range(ln):
            h = np.uint32(h16[off + j])
            ubuf[j] = ((h & np.uint32(0x8000)) << np.uint32(16)) | \
                ((h & np.uint32(0x7FFF)) << np.uint32(13))
        fv = ubuf.view(np.float32)
        for j in range(ln):
            out[j] = fv[j] * _TWO112
    elif code == 4:
        for j in range(ln):
            out[j] = f32[off + j]
    elif code == 5:
        for j in range(ln):
            out[j] = f64[off + j]


@njit(cache=True, parallel=True, fastmath=True)
def matmat(lr_blk, lr_col, lr_scale, d_blk, d_row, d_scale, f64, f32, h16, i8, lr_task,
           d_task, XT, acc, bu, bv, ub, zero):
    """``acc[t] (p, m) += H_t @ XT.T`` over the blocks of task ``t``."""
    p = XT.shape[0]
    for t in prange(acc.shape[0]):
        a, u, v, w = acc[t], bu[t], bv[t], ub[t]
        for b in range(lr_task[t], lr_task[t + 1]):
            r0, m, c0, n, lo, hi = lr_blk[b, 0], lr_blk[b, 1], lr_blk[b, 2], lr_blk[b, 3], \
                lr_blk[b, 4], lr_blk[b, 5]
            for c in range(lo, hi):
                code = lr_col[c, 0]
                _decode(code, lr_col[c, 2], n, lr_scale[c, 1], f64, f32, h16, i8, v, w, zero)
                _decode(code, lr_col[c, 1], m, lr_scale[c, 0], f64, f32, h16, i8, u, w, zero)
                for q in range(p):
                    s = zero
                    for j in range(n):
                        s += v[j] * XT[q, c0 + j]
                    for i in range(m):
                        a[q, r0 + i] += s * u[i]
        for b in range(d_task[t], d_task[t + 1]):
            r0, m, c0, n, lo = d_blk[b, 0], d_blk[b, 1], d_blk[b, 2], d_blk[b, 3], d_blk[b, 4]
            for r in range(m):
                code = d_row[lo + r, 0]
                if code == 0:
                    continue
                _decode(code, d_row[lo + r, 1], n, d_scale[lo + r], f64, f32, h16, i8, v, w, zero)
                for q in range(p):
                    s = zero
                    for j in range(n):
                        s += v[j] * XT[q, c0 + j]
                    a[q, r0 + r] += s


@njit(cache=True, parallel=True, fastmath=True)
def rmatmat(lr_blk, lr_col, lr_scale, d_blk, d_row, d_scale, f64, f32, h16, i8, lr_task,
            d_task, YT, acc, bu, bv, ub, zero):
    """``acc[t] (p, n) += (H_t.T @ YT.T).T`` over the blocks of task ``t``."""
    p = YT.shape[0]
    for t in prange(acc.shape[0]):
        a, u, v, w = acc[t], bu[t], bv[t], ub[t]
        for b in range(lr_task[t], lr_task[t + 1]):
            r0, m, c0, n, lo, hi = lr_blk[b, 0], lr_blk[b, 1], lr_blk[b, 2], lr_blk[b, 3], \
                lr_blk[b, 4], lr_blk[b, 5]
            for c in range(lo, hi):
                code = lr_col[c, 0]
                _decode(code, lr_col[c, 1], m, lr_scale[c, 0], f64, f32, h16, i8, u, w, zero)
                _decode(code, lr_col[c, 2], n, lr_scale[c, 1], f64, f32, h16, i8, v, w, zero)
                for q in range(p):
                    s = zero
                    for i in range(m):
                        s += u[i] * YT[q, r0 + i]
                    for j in range(n):
                        a[q, c0 + j] += s * v[j]
        for b in range(d_task[t], d_task[t + 1]):
            r0, m, c0, n, lo = d_blk[b, 0], d_blk[b, 1], d_blk[b, 2], d_blk[b, 3], d_blk[b, 4]
            for r in range(m):
                code = d_row[lo + r, 0]
                if code == 0:
                    continue
                _decode(code, d_row[lo + r, 1], n, d_scale[lo + r], f64, f32, h16, i8, v, w, zero)
                for q in range(p):
                    s = YT[q, r0 + r]
                    for j in range(n):
                        a[q, c0 + j] += s * v[j]
