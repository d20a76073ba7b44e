"""Numba kernels for H-matrix products on the packed storage of :class:`hmat.HMatrix`.

Layout (all in permuted index space):

* ``lr_desc[b] = (r0, m, c0, n, k, off)``: low-rank block ``b`` is ``U @ Vt`` with ``U`` (m x k,
  row-major) at ``lr_data[off:]`` and ``Vt`` (k x n, row-major) right after it.
* ``d_desc[b] = (r0, m, c0, n, off)``: dense block (m x n, row-major) at ``d_data[off:]``.

Vectors travel transposed: ``XT`` is ``(p, n)`` and ``YT`` is ``(p, m)``, C-contiguous, so that
every inner loop is a dot product over contiguous memory in both operands (a matrix row against
a vector), whatever the number of vectors ``p``; ``p = 1`` is the matrix-vector product.

Schedule (built by :func:`hmat.hmatrix._schedule` for a thread count): the rows are cut into
``tasks`` (``task_bounds``); ``task_items`` (CSR by ``task_ptr``) lists the blocks meeting each
task's rows, ``b >= 0`` low-rank, ``~b`` dense. A task owns its rows of ``Y``, so threads never
write the same entry. Cuts are placed where no block crosses them whenever that balances the work;
the few low-rank blocks that a cut does cross (``shared``) get ``Vt x`` computed once, in a first
parallel pass, and each task then applies its rows of ``U``. With no shared blocks the product is
one parallel region: each task computes ``t = Vt x`` of its own blocks and applies ``U t`` at once,
while ``t`` is hot.

Micro-kernels: ``Y[i, q] += A[i, :] . X[q, :]`` on tiles of 4 rows x 1 vector, 2 rows x 4 vectors,
4 rows x 2 vectors (and their remainders): each loaded row of ``A`` is used for several vectors and
each loaded vector for several rows, the loop is contiguous and vectorises (fastmath), and float32
accumulates in float32 like BLAS (``zero`` is a scalar of the data type).
"""

from __future__ import annotations

import numpy as np
from numba import config, njit, prange

_OPTS = dict(fastmath=True, cache=True, nogil=True)

#: row tasks per product: one per thread that numba may start (numba.set_num_threads can lower
#: the threads in use; prange then hands each thread a run of tasks)
N_TASKS = max(1, int(config.NUMBA_NUM_THREADS))
#: below this many entry-vector products (stored entries x vectors), run on the calling thread:
#: starting a parallel region costs more than it saves
PARALLEL_MIN_WORK = 1 << 16


# ---------------------------------------------------------------- dot-product micro-kernels
@njit(**_OPTS)
def _dot_4x1(a0, a1, a2, a3, x0, n, zero):
    s0 = zero
    s1 = zero
    s2 = zero
    s3 = zero
    for j in range(n):
        xj = x0[j]
        s0 += a0[j] * xj
        s1 += a1[j] * xj
        s2 += a2[j] * xj
        s3 += a3[j] * xj
    return s0, s1, s2, s3


@njit(**_OPTS)
def _dot_1x1(a0, x0, n, zero):
    s0 = zero
    for j in range(n):
        s0 += a0[j] * x0[j]
    return s0


@njit(**_OPTS)
def _dot_2x4(a0, a1, x0, x1, x2, x3, n, zero):
    s00 = zero
    s01 = zero
    s02 = zero
    s03 = zero
    s10 = zero
    s11 = zero
    s12 = zero
    s13 = zero
    for j in range(n):
        u = a0[j]
        v = a1[j]
        s00 += u * x0[j]
        s01 += u * x1[j]
        s02 += u * x2[j]
        s03 += u * x3[j]
        s10 += v * x0[j]
        s11 += v * x1[j]
        s12 += v * x2[j]
        s13 += v * x3[j]
    return s00, s01, s02, s03, s10, s11, s12, s13


@njit(**_OPTS)
def _dot_1x4(a0, x0, x1, x2, x3, n, zero):
    s0 = zero
    s1 = zero
    s2 = zero
    s3 = zero
    for j in range(n):
        u = a0[j]
        s0 += u * x0[j]
        s1 += u * x1[j]
        s2 += u * x2[j]
        s3 += u * x3[j]
    return s0, s1, s2, s3


@njit(**_OPTS)
def _dot_4x2(a0, a1, a2, a3, x0, x1, n, zero):
    s00 = zero
    s01 = zero
    s10 = zero
    s11 = zero
    s20 = zero
    s21 = zero
    s30 = zero
    s31 = zero
    for j in range(n):
        p = x0[j]
        q = x1[j]
        s00 += a0[j] * p
        s01 += a0[j] * q
        s10 += a1[j] * p
        s11 += a1[j] * q
        s20 += a2[j] * p
        s21 += a2[j] * q
        s30 += a3[j] * p
        s31 += a3[j] * q
    return s00, s01, s10, s11, s20, s21, s30, s31


@njit(**_OPTS)
def _gemm_nt(a, off, m, n, XT, c0, YT, r0, zero):
    """``YT[:, r0:r0+m] += A @ XT[:, c0:c0+n].T`` for ``A`` (m x n, row-major) at ``a[off:]``."""
    p = XT.shape[0]
    q = 0
    while q + 4 <= p:
        x0 = XT[q, c0:c0 + n]
        x1 = XT[q + 1, c0:c0 + n]
        x2 = XT[q + 2, c0:c0 + n]
        x3 = XT[q + 3, c0:c0 + n]
        i = 0
        while i + 2 <= m:
            o = off + i * n
            s = _dot_2x4(a[o:o + n], a[o + n:o + 2 * n], x0, x1, x2, x3, n, zero)
            YT[q, r0 + i] += s[0]
            YT[q + 1, r0 + i] += s[1]
            YT[q + 2, r0 + i] += s[2]
            YT[q + 3, r0 + i] += s[3]
            YT[q, r0 + i + 1] += s[4]
            YT[q + 1, r0 + i + 1] += s[5]
            YT[q + 2, r0 + i + 1] += s[6]
            YT[q + 3, r0 + i + 1] += s[7]
            i += 2
        if i < m:
            o = off + i * n
            s4 = _dot_1x4(a[o:o + n], x0, x1, x2, x3, n, zero)
            YT[q, r0 + i] += s4[0]
            YT[q + 1, r0 + i] += s4[1]
            YT[q + 2, r0 + i] += s4[2]
            YT[q + 3, r0 + i] += s4[3]
        q += 4
    if q + 2 <= p:
        x0 = XT[q, c0:c0 + n]
        x1 = XT[q + 1, c0:c0 + n]
        i = 0
        while i + 4 <= m:
            o = off + i * n
            s = _dot_4x2(a[o:o + n], a[o + n:o + 2 * n], a[o + 2 * n:o + 3 * n],
                         a[o + 3 * n:o + 4 * n], x0, x1, n, zero)
            YT[q, r0 + i] += s[0]
            YT[q + 1, r0 + i] += s[1]
            YT[q, r0 + i + 1] += s[2]
            YT[q + 1, r0 + i + 1] += s[3]
            YT[q, r0 + i + 2] += s[4]
            YT[q + 1, r0 + i + 2] += s[5]
            YT[q, r0 + i + 3] += s[6]
            YT[q + 1, r0 + i + 3] += s[7]
            i += 4
        while i < m:
            o = off + i * n
            YT[q, r0 + i] += _dot_1x1(a[o:o + n], x0, n, zero)
            YT[q + 1, r0 + i] += _dot_1x1(a[o:o + n], x1, n, zero)
            i += 1
        q += 2
    if q < p:
        x0 = XT[q, c0:c0 + n]
        i = 0
        while i + 4 <= m:
            o = off + i * n
            s0, s1, s2, s3 = _dot_4x1(a[o:o + n], a[o + n:o + 2 * n], a[o + 2 * n:o + 3 * n],
                                      a[o + 3 * n:o + 4 * n], x0, n, zero)
            YT[q, r0 + i] += s0
            YT[q, r0 + i + 1] += s1
            YT[q, r0 + i + 2] += s2
            YT[q, r0 + i + 3] += s3
            i += 4
        while i < m:
            o = off + i * n
            YT[q, r0 + i] += _dot_1x1(a[o:o + n], x0, n, zero)
            i += 1


# ---------------------------------------------------------------- one block, one task
@njit(**_OPTS)
def _vt_block(b, lr_desc, lr_data, XT, TT, zero):
    """``TT[:, :k] = (Vt_b @ XT[:, cols_b].T).T``: the ``t`` of one low-rank block."""
    m, c0, n, k, off = lr_desc[b, 1], lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4], lr_desc[b, 5]
    TT[:, :k] = zero
    _gemm_nt(lr_data, off + m * k, k, n, XT, c0, TT, 0, zero)


@njit(**_OPTS)
def _run_task(task, lr_desc, lr_data, d_desc, d_data, t_off_p, task_bounds, task_ptr, task_items,
              XT, YT, T, kmax, zero):
    """All contributions to the rows ``task_bounds[task]:task_bounds[task + 1]`` of ``H X``."""
    lo, hi = task_bounds[task], task_bounds[task + 1]
    p = XT.shape[0]
    YT[:, lo:hi] = zero
    tt = np.empty((p, kmax), dtype=YT.dtype)
    for it in range(task_ptr[task], task_ptr[task + 1]):
        item = task_items[it]
        if item >= 0:
            r0, m, k, off = lr_desc[item, 0], lr_desc[item, 1], lr_desc[item, 4], lr_desc[item, 5]
            if k == 0:
                continue
            if r0 >= lo and r0 + m <= hi:  # owned: t computed here and used at once
                _vt_block(item, lr_desc, lr_data, XT, tt, zero)
                src = tt
            else:  # shared with another task: t was computed in the first pass
                src = T[t_off_p[item]:t_off_p[item + 1]].reshape((p, k))
            a, e = max(lo, r0), min(hi, r0 + m)
            _gemm_nt(lr_data, off + (a - r0) * k, e - a, k, src, 0, YT, a, zero)
        else:
            d = ~item
            r0, m, c0, n, off = d_desc[d, 0], d_desc[d, 1], d_desc[d, 2], d_desc[d, 3], d_desc[d, 4]
            a, e = max(lo, r0), min(hi, r0 + m)
            _gemm_nt(d_data, off + (a - r0) * n, e - a, n, XT, c0, YT, a, zero)


# ---------------------------------------------------------------- entry point
@njit(**_OPTS)
def _workspace(t_off, p, dtype_of):
    """Offsets of each block's ``t`` for ``p`` vectors and the buffer of the shared blocks' ``t``
    (outside the parallel function: there numba would turn ``t_off * p`` into a parallel loop)."""
    t_off_p = t_off * p
    return t_off_p, np.empty(t_off_p[-1], dtype=dtype_of.dtype)


@njit(**_OPTS)
def _product_serial(lr_desc, lr_data, d_desc, d_data, t_off_p, task_bounds, task_ptr, task_items,
                    shared, kmax, XT, YT, T, zero):
    p = XT.shape[0]
    for s in range(shared.shape[0]):
        b = shared[s]
        _vt_block(b, lr_desc, lr_data, XT,
                  T[t_off_p[b]:t_off_p[b + 1]].reshape((p, lr_desc[b, 4])), zero)
    for task in range(task_bounds.shape[0] - 1):
        _run_task(task, lr_desc, lr_data, d_desc, d_data, t_off_p, task_bounds, task_ptr,
                  task_items, XT, YT, T, kmax, zero)


@njit(parallel=True, **_OPTS)
def product(lr_desc, lr_data, d_desc, d_data, t_off, task_bounds, task_ptr, task_items, shared,
            kmax, XT, YT, zero, parallel):
    """``YT = (H @ XT.T).T`` for ``XT (p, n)``, ``YT (p, m)``, C-contiguous. First the shared
    blocks' ``t``, then the tasks; over the threads when ``parallel`` (``numba.set_num_threads``
    sets how many), else on the calling thread, which saves starting a parallel region on small
    products. Only the two prange loops live here: any array expression in a parallel function
    becomes a parallel region of its own."""
    p = XT.shape[0]
    t_off_p, T = _workspace(t_off, p, YT)
    if not parallel:
        _product_serial(lr_desc, lr_data, d_desc, d_data, t_off_p, task_bounds, task_ptr,
                        task_items, shared, kmax, XT, YT, T, zero)
        return
    if shared.shape[0] > 0:  # an empty prange would still start a parallel region
        for s in prange(shared.shape[0]):
            b = shared[s]
            _vt_block(b, lr_desc, lr_data, XT,
                      T[t_off_p[b]:t_off_p[b + 1]].reshape((p, lr_desc[b, 4])), zero)
    for task in prange(task_bounds.shape[0] - 1):
        _run_task(task, lr_desc, lr_data, d_desc, d_data, t_off_p, task_bounds, task_ptr,
                  task_items, XT, YT, T, kmax, zero)


@njit(cache=True, fastmath=True)
def rmatmat(lr_desc, lr_data, d_desc, d_data, X, Y):
    """``Y = H^T X`` (serial; used for adjoints, not on the hot path)."""
    p = X.shape[1]
    Y[:] = 0.0
    for b in range(lr_desc.shape[0]):
        r0, m, c0, n = lr_desc[b, 0], lr_desc[b, 1], lr_desc[b, 2], lr_desc[b, 3]
        k, off = lr_desc[b, 4], lr_desc[b, 5]
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
