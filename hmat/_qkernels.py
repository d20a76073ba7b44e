"""Numba kernels for products with a quantized H-matrix (:class:`hmat.precision.QStore`).

Each stored column of a low-rank block (``U[:, i]``, ``Vt[i]``) and each stored row of a dense
block is read where it lies and applied to every vector: the matrix is never expanded to
float32 or float64. int8, float32 and float64 are read in place (int8 converted in the dot
product, its float32 scale applied to the result); bfloat16 and float16 are decoded into a small
per-thread buffer first (a low-rank group whole, ``(m + n) k`` values; a dense row at a
time): bfloat16 as the upper half of a float32 (a shift), float16 by re-biasing
its exponent into a float32 (exact; float16 overflow is never stored). Loops run over
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

_TWO_M24 = 2.0 ** -24


@njit(cache=True, fastmath=True)
def _decode(code, src, ln, out, ubuf):
    """``out[:ln]`` = the bfloat16 (code 2) or float16 (code 3) values whose bits are ``src``.
    float16: normal numbers by re-biasing the exponent into float32 bits, zeros and subnormals
    as ``mantissa * 2**-24`` (a select, so the loop vectorises and no float32 subnormal, slow on
    x86, is ever formed)."""
    if code == 2:
        for j in range(ln):
            ubuf[j] = np.uint32(src[j]) << np.uint32(16)
    else:
        for j in range(ln):
            h = np.uint32(src[j])
            ubuf[j] = (((h & np.uint32(0x7FFF)) << np.uint32(13)) + np.uint32(0x38000000)) | \
                ((h & np.uint32(0x8000)) << np.uint32(16))
    fv = ubuf.view(np.float32)
    if code == 2:
        for j in range(ln):
            out[j] = fv[j]
    else:
        for j in range(ln):
            h = np.uint32(src[j])
            sub = np.float32(h & np.uint32(0x3FF)) * np.float32(_TWO_M24)
            if h & np.uint32(0x8000):
                sub = -sub
            out[j] = fv[j] if (h & np.uint32(0x7C00)) else sub


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


# ---------------------------------------------------------------- one group / run, one type
@njit(cache=True, fastmath=True)
def _group(U, ou, V, ov, m, n, k, c0, r0, sc, lo, X, acc, zero, transposed):
    """Columns ``lo..lo+k`` of a low-rank block: ``U_g^T`` (k x m) at ``U[ou:]`` and ``Vt_g``
    (k x n) at ``V[ov:]``, row-major, so both factors are read as k contiguous rows. Forward,
    per column c: ``y[r0:] += (s_c Vt_g[c] . x[c0:]) U_g[:, c]``; transposed:
    ``x[c0:] += (s_c U_g[:, c] . y[r0:]) Vt_g[c]`` (``s_c`` the product of the scales)."""
    for c in range(k):
        s = (zero + sc[lo + c, 0]) * sc[lo + c, 1]
        u = U[ou + c * m:ou + c * m + m]
        v = V[ov + c * n:ov + c * n + n]
        for q in range(X.shape[0]):
            if transposed:
                _axpy(_dot(u, X[q, r0:r0 + m], m, zero) * s, v, acc[q, c0:c0 + n], n)
            else:
                _axpy(_dot(v, X[q, c0:c0 + n], n, zero) * s, u, acc[q, r0:r0 + m], m)


@njit(cache=True, fastmath=True)
def _rows(D, off, count, n, c0, r, sc, s_lo, X, acc, zero, transposed):
    """Rows ``r..r+count`` (output rows) of a dense block, row-major at ``D[off:]``, scales
    ``sc[s_lo:]``: ``y[r+i] += s_i D_i . x[c0:]`` (transposed: ``x[c0:] += s_i y[r+i] D_i``)."""
    p = X.shape[0]
    for i in range(count):
        a = D[off + i * n:off + i * n + n]
        s = zero + sc[s_lo + i]
        for q in range(p):
            if transposed:
                _axpy(X[q, r + i] * s, a, acc[q, c0:c0 + n], n)
            else:
                acc[q, r + i] += _dot(a, X[q, c0:c0 + n], n, zero) * s


# ---------------------------------------------------------------- blocks
@njit(cache=True, fastmath=True)
def _lowrank(lr_blk, lr_grp, lr_scale, f64, f32, h16, i8, b, X, acc, buf, ubuf, zero,
             transposed):
    """Low-rank block ``b``, group by group: int8/float32/float64 read in place,
    bfloat16/float16 groups decoded into the thread's buffer first (``(m + n) k`` values)."""
    r0, m, c0, n = lr_blk[b, 0], lr_blk[b, 1], lr_blk[b, 2], lr_blk[b, 3]
    for g in range(lr_blk[b, 4], lr_blk[b, 5]):
        code, ou, ov, lo = lr_grp[g, 0], lr_grp[g, 1], lr_grp[g, 2], lr_grp[g, 3]
        k = lr_grp[g, 4] - lo
        if code == 1:
            _group(i8, ou, i8, ov, m, n, k, c0, r0, lr_scale, lo, X, acc, zero, transposed)
        elif code == 4:
            _group(f32, ou, f32, ov, m, n, k, c0, r0, lr_scale, lo, X, acc, zero, transposed)
        elif code == 5:
            _group(f64, ou, f64, ov, m, n, k, c0, r0, lr_scale, lo, X, acc, zero, transposed)
        else:
            _decode(code, h16[ou:ou + m * k], m * k, buf, ubuf)
            _decode(code, h16[ov:ov + k * n], k * n, buf[m * k:], ubuf)
            _group(buf, 0, buf, m * k, m, n, k, c0, r0, lr_scale, lo, X, acc, zero, transposed)


@njit(cache=True, fastmath=True)
def _dense(d_blk, d_run, d_scale, f64, f32, h16, i8, b, X, acc, buf, ubuf, zero, transposed):
    """Dense block ``b``, run by run (bfloat16/float16 rows decoded one at a time)."""
    r0, c0, n = d_blk[b, 0], d_blk[b, 2], d_blk[b, 3]
    for u in range(d_blk[b, 4], d_blk[b, 5]):
        code, off, row, count, s_lo = d_run[u, 0], d_run[u, 1], d_run[u, 2], d_run[u, 3], \
            d_run[u, 4]
        if code == 1:
            _rows(i8, off, count, n, c0, r0 + row, d_scale, s_lo, X, acc, zero, transposed)
        elif code == 4:
            _rows(f32, off, count, n, c0, r0 + row, d_scale, s_lo, X, acc, zero, transposed)
        elif code == 5:
            _rows(f64, off, count, n, c0, r0 + row, d_scale, s_lo, X, acc, zero, transposed)
        elif code != 0:
            for i in range(count):
                _decode(code, h16[off + i * n:off + i * n + n], n, buf, ubuf)
                _rows(buf, 0, 1, n, c0, r0 + row + i, d_scale, s_lo + i, X, acc, zero,
                      transposed)


@njit(cache=True, fastmath=True)
def _task(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task, d_task,
          t, X, acc, buf, ubuf, zero, transposed):
    """The blocks of task ``t`` into its accumulator ``acc`` (p, m) (transposed: (p, n))."""
    for b in range(lr_task[t], lr_task[t + 1]):
        _lowrank(lr_blk, lr_grp, lr_scale, f64, f32, h16, i8, b, X, acc, buf, ubuf, zero,
                 transposed)
    for b in range(d_task[t], d_task[t + 1]):
        _dense(d_blk, d_run, d_scale, f64, f32, h16, i8, b, X, acc, buf, ubuf, zero,
               transposed)


@njit(cache=True, fastmath=True)
def product(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task,
            d_task, X, acc, buf, ubuf, zero, transposed):
    """One task on the calling thread: a parallel launch costs ~40 us, more than a small
    product (``acc`` (1, p, out))."""
    _task(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task, d_task,
          0, X, acc[0], buf[0], ubuf[0], zero, transposed)


@njit(cache=True, parallel=True, fastmath=True)
def product_parallel(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8,
                     lr_task, d_task, X, acc, buf, ubuf, zero, transposed):
    """Every task on its own thread, each into its own accumulator ``acc[t]``; forward
    ``acc[t] (p, m) += H_t @ X.T``, transposed ``acc[t] (p, n) += (H_t.T @ X.T).T``."""
    for t in prange(acc.shape[0]):
        _task(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task,
              d_task, t, X, acc[t], buf[t], ubuf[t], zero, transposed)
