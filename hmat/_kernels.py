"""Numba kernels for H-matrix products on the packed storage of :class:`hmat.HMatrix`.

Layout (all in permuted index space):

* ``lr_desc[b] = (r0, m, c0, n, k, off)``: low-rank block ``b`` is ``U @ Vt`` with ``U`` (m x k,
  row-major) at ``lr_data[off:]`` and ``Vt`` (k x n, row-major) right after it.
* ``d_desc[b] = (r0, m, c0, n, off)``: dense block (m x n, row-major) at ``d_data[off:]``.
* ``chunk_bounds`` cut the rows into chunks that no block boundary crosses; ``chunk_items`` (CSR
  by ``chunk_ptr``) lists the blocks covering each chunk: ``b >= 0`` low-rank, ``~b`` dense.

A product runs in two parallel phases: ``t_b = Vt_b x`` for every low-rank block (independent),
then every row chunk sums its blocks' contributions into its own rows, so threads never write to
the same entry of ``y``. Loops run over contiguous memory so that they vectorise (fastmath);
``zero`` is a scalar of the data type, so float32 products accumulate in float32 like BLAS sgemv.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@njit(**_OPTS)
def matvec(lr_desc, lr_data, d_desc, d_data, t_off, chunk_bounds, chunk_ptr, chunk_items, x, y, zero):
    t = np.empty(t_off[-1], dtype=y.dtype)
    for b in prange(lr_desc.shape[0]):
        m, c0, n, k, off = lr_desc[b, 1], lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4], lr_desc[b, 5]
        vt = lr_data[off + m * k: off + m * k + k * n].reshape((k, n))
        xs = x[c0: c0 + n]
        tb = t[t_off[b]: t_off[b] + k]
        for r in range(k):
            acc = zero
            for j in range(n):
                acc += vt[r, j] * xs[j]
            tb[r] = acc
    for c in prange(chunk_bounds.shape[0] - 1):
        lo, hi = chunk_bounds[c], chunk_bounds[c + 1]
        ys = y[lo:hi]
        ys[:] = zero
        for p in range(chunk_ptr[c], chunk_ptr[c + 1]):
            item = chunk_items[p]
            if item >= 0:
                r0, m, k, off = lr_desc[item, 0], lr_desc[item, 1], lr_desc[item, 4], lr_desc[item, 5]
                u = lr_data[off: off + m * k].reshape((m, k))[lo - r0: hi - r0]
                tb = t[t_off[item]: t_off[item] + k]
                for i in range(hi - lo):
                    acc = zero
                    for r in range(k):
                        acc += u[i, r] * tb[r]
                    ys[i] += acc
            else:
                d = ~item
                r0, m, c0, n, off = d_desc[d, 0], d_desc[d, 1], d_desc[d, 2], d_desc[d, 3], d_desc[d, 4]
                a = d_data[off: off + m * n].reshape((m, n))[lo - r0: hi - r0]
                xs = x[c0: c0 + n]
                for i in range(hi - lo):
                    acc = zero
                    for j in range(n):
                        acc += a[i, j] * xs[j]
                    ys[i] += acc


@njit(**_OPTS)
def matmat(lr_desc, lr_data, d_desc, d_data, t_off, chunk_bounds, chunk_ptr, chunk_items, X, Y):
    p = X.shape[1]
    T = np.zeros((t_off[-1], p), dtype=Y.dtype)
    for b in prange(lr_desc.shape[0]):
        m, c0, n, k, off = lr_desc[b, 1], lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4], lr_desc[b, 5]
        vt = lr_data[off + m * k: off + m * k + k * n].reshape((k, n))
        xs = X[c0: c0 + n]
        tb = T[t_off[b]: t_off[b] + k]
        for r in range(k):
            for j in range(n):
                a = vt[r, j]
                for q in range(p):
                    tb[r, q] += a * xs[j, q]
    for c in prange(chunk_bounds.shape[0] - 1):
        lo, hi = chunk_bounds[c], chunk_bounds[c + 1]
        ys = Y[lo:hi]
        ys[:] = 0.0
        for pp in range(chunk_ptr[c], chunk_ptr[c + 1]):
            item = chunk_items[pp]
            if item >= 0:
                r0, m, k, off = lr_desc[item, 0], lr_desc[item, 1], lr_desc[item, 4], lr_desc[item, 5]
                u = lr_data[off: off + m * k].reshape((m, k))[lo - r0: hi - r0]
                tb = T[t_off[item]: t_off[item] + k]
                for i in range(hi - lo):
                    for r in range(k):
                        a = u[i, r]
                        for q in range(p):
                            ys[i, q] += a * tb[r, q]
            else:
                d = ~item
                r0, m, c0, n, off = d_desc[d, 0], d_desc[d, 1], d_desc[d, 2], d_desc[d, 3], d_desc[d, 4]
                a2 = d_data[off: off + m * n].reshape((m, n))[lo - r0: hi - r0]
                xs = X[c0: c0 + n]
                for i in range(hi - lo):
                    for j in range(n):
                        a = a2[i, j]
                        for q in range(p):
                            ys[i, q] += a * xs[j, q]


@njit(cache=True, fastmath=True)
def rmatmat(lr_desc, lr_data, d_desc, d_data, X, Y):
    """``Y = H^T X`` (serial; used for adjoints, not on the hot path)."""
    p = X.shape[1]
    Y[:] = 0.0
    for b in range(lr_desc.shape[0]):
        r0, m, c0, n, k, off = lr_desc[b, 0], lr_desc[b, 1], lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4], lr_desc[b, 5]
        u = lr_data[off: off + m * k].reshape((m, k))
        vt = lr_data[off + m * k: off + m * k + k * n].reshape((k, n))
        t = np.zeros((k, p), dtype=Y.dtype)
        for i in range(m):
            for r in range(k):
                a = u[i, r]
                for q in range(p):
                    t[r, q] += a * X[r0 + i, q]
        for r in range(k):
            for j in range(n):
                a = vt[r, j]
                for q in range(p):
                    Y[c0 + j, q] += a * t[r, q]
    for d in range(d_desc.shape[0]):
        r0, m, c0, n, off = d_desc[d, 0], d_desc[d, 1], d_desc[d, 2], d_desc[d, 3], d_desc[d, 4]
        a2 = d_data[off: off + m * n].reshape((m, n))
        for i in range(m):
            for j in range(n):
                a = a2[i, j]
                for q in range(p):
                    Y[c0 + j, q] += a * X[r0 + i, q]
