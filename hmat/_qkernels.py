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
def _decode(code, src, ln, out, ubuf):
    """``out[:ln]`` = the bfloat16 (code 2) or float16 (code 3) values whose bits are ``src``."""
    if code == 2:
        for j in range(ln):
            ubuf[j] = np.uint32(src[j]) << np.uint32(16)
    else:
        for j in range(ln):
            h = np.uint32(src[j])
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
def _dots(a, V, lo, n, out, j, s, add, zero):
    """For every vector q: ``out[q, j] (+)= s * (a . V[q, lo:lo+n])``."""
    for q in range(V.shape[0]):
        d = _dot(a, V[q, lo:lo + n], n, zero) * s
        if add:
            out[q, j] += d
        else:
            out[q, j] = d


@njit(cache=True, fastmath=True)
def _axpys(a, C, j, s, out, lo, n):
    """For every vector q: ``out[q, lo:lo+n] += (s * C[q, j]) * a``."""
    for q in range(C.shape[0]):
        _axpy(C[q, j] * s, a, out[q, lo:lo + n], n)


@njit(cache=True, fastmath=True)
def _dots_code(code, off, n, f64, f32, h16, i8, buf, ubuf, V, lo, out, j, s, add, zero):
    """:func:`_dots` with the stored vector at ``off`` of the buffer of ``code``."""
    if code == 1:
        _dots(i8[off:off + n], V, lo, n, out, j, s, add, zero)
    elif code == 4:
        _dots(f32[off:off + n], V, lo, n, out, j, s, add, zero)
    elif code == 5:
        _dots(f64[off:off + n], V, lo, n, out, j, s, add, zero)
    else:
        _decode(code, h16[off:off + n], n, buf, ubuf)
        _dots(buf[:n], V, lo, n, out, j, s, add, zero)


@njit(cache=True, fastmath=True)
def _axpys_code(code, off, n, f64, f32, h16, i8, buf, ubuf, C, j, s, out, lo):
    """:func:`_axpys` with the stored vector at ``off`` of the buffer of ``code``."""
    if code == 1:
        _axpys(i8[off:off + n], C, j, s, out, lo, n)
    elif code == 4:
        _axpys(f32[off:off + n], C, j, s, out, lo, n)
    elif code == 5:
        _axpys(f64[off:off + n], C, j, s, out, lo, n)
    else:
        _decode(code, h16[off:off + n], n, buf, ubuf)
        _axpys(buf[:n], C, j, s, out, lo, n)


@njit(cache=True, fastmath=True)
def _lowrank(lr_blk, lr_grp, lr_scale, f64, f32, h16, i8, b, V, acc, tb, buf, ubuf, zero,
             transposed):
    """Low-rank block ``b``, one group of columns of one storage type at a time. Forward:
    ``t = diag(su sv) Vt_g x`` (rows of ``Vt_g``), then ``y[i] += U_g[i] . t`` (rows of
    ``U_g``). Transposed: ``t = U_g^T y`` (rows of ``U_g``), scaled, then ``x += t_c Vt_g[c]``."""
    r0, m, c0, n = lr_blk[b, 0], lr_blk[b, 1], lr_blk[b, 2], lr_blk[b, 3]
    one = zero + 1
    for g in range(lr_blk[b, 4], lr_blk[b, 5]):
        code, ou, ov, lo, hi = lr_grp[g, 0], lr_grp[g, 1], lr_grp[g, 2], lr_grp[g, 3], \
            lr_grp[g, 4]
        k = hi - lo
        if not transposed:
            for c in range(k):
                s = (zero + lr_scale[lo + c, 0]) * lr_scale[lo + c, 1]
                _dots_code(code, ov + c * n, n, f64, f32, h16, i8, buf, ubuf, V, c0, tb, c, s,
                           False, zero)
            for i in range(m):
                _dots_code(code, ou + i * k, k, f64, f32, h16, i8, buf, ubuf, tb, 0, acc,
                           r0 + i, one, True, zero)
        else:
            for q in range(V.shape[0]):
                for c in range(k):
                    tb[q, c] = zero
            for i in range(m):
                _axpys_code(code, ou + i * k, k, f64, f32, h16, i8, buf, ubuf, V, r0 + i, one,
                            tb, 0)
            for c in range(k):
                s = (zero + lr_scale[lo + c, 0]) * lr_scale[lo + c, 1]
                _axpys_code(code, ov + c * n, n, f64, f32, h16, i8, buf, ubuf, tb, c, s, acc,
                            c0)


@njit(cache=True, fastmath=True)
def _dense(d_blk, d_run, d_scale, f64, f32, h16, i8, b, V, acc, buf, ubuf, zero, transposed):
    """Every stored row of dense block ``b``, run by run."""
    r0, c0, n = d_blk[b, 0], d_blk[b, 2], d_blk[b, 3]
    for u in range(d_blk[b, 4], d_blk[b, 5]):
        code, off, row, count, s_lo = d_run[u, 0], d_run[u, 1], d_run[u, 2], d_run[u, 3], \
            d_run[u, 4]
        if code == 0:
            continue
        for r in range(count):
            s = zero + d_scale[s_lo + r]
            if transposed:
                _axpys_code(code, off + r * n, n, f64, f32, h16, i8, buf, ubuf, V, r0 + row + r,
                            s, acc, c0)
            else:
                _dots_code(code, off + r * n, n, f64, f32, h16, i8, buf, ubuf, V, c0, acc,
                           r0 + row + r, s, True, zero)


@njit(cache=True, parallel=True, fastmath=True)
def matmat(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task,
           d_task, XT, acc, tb, buf, ubuf, zero):
    """``acc[t] (p, m) += H_t @ XT.T`` over the blocks of task ``t``."""
    for t in prange(acc.shape[0]):
        for b in range(lr_task[t], lr_task[t + 1]):
            _lowrank(lr_blk, lr_grp, lr_scale, f64, f32, h16, i8, b, XT, acc[t], tb[t],
                     buf[t], ubuf[t], zero, False)
        for b in range(d_task[t], d_task[t + 1]):
            _dense(d_blk, d_run, d_scale, f64, f32, h16, i8, b, XT, acc[t], buf[t], ubuf[t],
                   zero, False)


@njit(cache=True, parallel=True, fastmath=True)
def rmatmat(lr_blk, lr_grp, lr_scale, d_blk, d_run, d_scale, f64, f32, h16, i8, lr_task,
            d_task, YT, acc, tb, buf, ubuf, zero):
    """``acc[t] (p, n) += (H_t.T @ YT.T).T`` over the blocks of task ``t``."""
    for t in prange(acc.shape[0]):
        for b in range(lr_task[t], lr_task[t + 1]):
            _lowrank(lr_blk, lr_grp, lr_scale, f64, f32, h16, i8, b, YT, acc[t], tb[t],
                     buf[t], ubuf[t], zero, True)
        for b in range(d_task[t], d_task[t + 1]):
            _dense(d_blk, d_run, d_scale, f64, f32, h16, i8, b, YT, acc[t], buf[t], ubuf[t],
                   zero, True)
