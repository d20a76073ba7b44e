"""Numba kernels for H-matrix products on the row-panel storage of :class:`hmat.HMatrix`.

Layout (all in permuted index space; see :mod:`hmat._layout`):

* The rows are cut into *chunks* (``chunks``) that no block boundary crosses. Chunk ``c`` owns one
  row-major *panel* at ``panel[pan_off[c]:]``, ``L x W`` (``L`` rows of the chunk, ``W`` columns):
  side by side, the chunk's rows of every dense block ``D_b`` and of every low-rank factor ``U_b``
  that covers the chunk. The *segments* ``seg[s] = (item, src, len, pos)`` (CSR by ``seg_ptr``)
  say what multiplies each column range ``pos:pos+len`` of the panel: for a dense block
  (``item = ~b``) the input entries ``x[src:src+len]``, for a low-rank block (``item = b``) its
  ``t_b = Vt_b x``. The product gathers ``z_c`` by *runs* (``runs``, CSR by ``run_ptr``): merged
  segments that read consecutive entries of ``x`` or of ``T``, the ``(p, sum k)`` buffer where the
  ``t`` of consecutive low-rank blocks lie side by side.
  So a chunk's contribution is ONE small dense product, ``y_c = P_c z_c``, whose
  rows are long and contiguous: this is what lets the kernels stream at the speed of a dense
  matrix-vector product instead of stalling on hundreds of 20-to-40-entry rows.
* ``vt[vt_off[b]:]`` holds ``Vt_b`` (``k x n``, row-major) of low-rank block ``b``.

Vectors travel transposed: ``XT`` is ``(p, n)`` and ``YT`` is ``(p, m)``, C-contiguous, so that
every inner loop is a dot product over contiguous memory in both operands, whatever ``p``.
One vector (``p = 1``, the common case of a layer) runs on 1-d views (:func:`_run_task1`): each
row of ``y`` is written once, not zeroed and then accumulated.

Schedule (built by :func:`hmat._layout.schedule` for a thread count): consecutive chunks form one
*task* per thread (``task_chunk``); a task computes ``t_b`` of the low-rank blocks that lie wholly
in its rows (``task_lr``, CSR by ``task_ptr``), then its panels. The few low-rank blocks that a
task cut crosses (``shared``) get ``t_b`` computed first, in a separate parallel pass. A task owns
its rows of ``Y``, so threads never write the same entry.

The integer tables (offsets, runs, descriptors, schedule) reach the kernels packed in one int64
array, the *plan* (:func:`pack_plan`), so that a call passes three arrays besides the vectors.

Many vectors (``p >= GEMM_MIN_VECTORS``) take another route, :func:`product_gemm`: the same
panels and ``Vt`` factors, but one BLAS GEMM per low-rank block and per chunk, on ``X (n, p)``
as given (no transposition), since BLAS blocks a GEMM for the cache better than these loops do.

Micro-kernels: ``Y[i, q] += A[i, :] . X[q, :]`` on tiles of 2 rows x 1 vector, 2 rows x 4 vectors,
4 rows x 2 vectors (and their remainders): each loaded row of ``A`` is used for several vectors and
each loaded vector for several rows, the loop is contiguous and vectorises (fastmath), and float32
accumulates in float32 like BLAS (``zero`` is a scalar of the data type).
"""

from __future__ import annotations

import os

import numpy as np
from numba import config, get_num_threads, njit, prange

from ._vecdot import rows_dot


def _start_threads(env=os.environ) -> str:
    """Start numba's thread pool now, with OpenMP threads that sleep when idle
    (``OMP_WAIT_POLICY=PASSIVE``) unless the user set a wait policy; returns the policy in force.

    Why: busy-waiting OpenMP threads and numpy's (OpenBLAS) or torch's busy-waiting threads take
    the cores from each other. On a 2-core machine, alternating ``W @ x`` and ``H @ x`` on two
    threads each took 8 ms per pair with the default policy and 0.15 ms with the passive one. The
    variable is read once, by the OpenMP runtime that the pool loads now, and removed again, so
    libraries loaded later keep their own defaults."""
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return env.get("OMP_WAIT_POLICY", f"GOMP_SPINCOUNT={env.get('GOMP_SPINCOUNT')}")
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        get_num_threads()  # loads the threading layer, which reads the variable
    finally:
        del env["OMP_WAIT_POLICY"]
    return "PASSIVE (set by hmat)"


#: the OpenMP wait policy of numba's thread pool (``"PASSIVE (set by hmat)"`` by default)
WAIT_POLICY = _start_threads()

_OPTS = dict(fastmath=True, cache=True, nogil=True)

#: row tasks per product: one per thread that numba may start (numba.set_num_threads can lower
#: the threads in use; prange then hands each thread a run of tasks)
N_TASKS = max(1, int(config.NUMBA_NUM_THREADS))
#: below this many entry-vector products (stored entries x vectors), run on the calling thread:
#: waking sleeping threads costs more than it saves. On 2 cores, the MobileNetV2 classifier at
#: rank 30 (0.67 M entries, one vector) took 77-87 us on one thread and 87-99 us on two
PARALLEL_MIN_WORK = 1 << 20
#: from this many vectors on, products run on BLAS GEMMs (:func:`product_gemm`) instead of the
#: micro-kernels below. On 1 thread (classifier 1000 x 1280, ranks 30 and 70, float32 and
#: float64) BLAS was faster from 4 vectors on in every case, mixed at 2 and 3 (2026-12-02)
GEMM_MIN_VECTORS = 4
#: the most multiply-adds (rows x columns x vectors) of one BLAS call where the BLAS has
#: small-matrix GEMM kernels: larger ones are cut into row pieces. OpenBLAS's SkylakeX-class
#: builds run a GEMM of at most 100^3 of them on such kernels, which do not pack the operands;
#: there, on 31-row panels of 520-760 columns and 64 vectors (1.3-1.5 M) the packing path took 1.5x
#: as long (MobileNetV2 classifier ranks 50/70, one thread, 2026-12-02). Other builds (OpenBLAS's
#: Haswell kernels) have no such path: cutting only re-packs the right-hand side for every piece
#: (float32 rank 30, 256 vectors: 1.95 x dense with pieces, 1.06-1.08 without; see gemm_max_mnk)
GEMM_MAX_MNK = 1_000_000
#: OpenBLAS kernel families (threadpoolctl's "architecture") with small-matrix GEMM kernels
SMALL_GEMM_ARCHS = ("SkylakeX", "Cooperlake", "SapphireRapids")


def gemm_max_mnk(architecture: str | None) -> int:
    """The row-piece limit of :func:`product_gemm` for a BLAS of this kernel family: pieces of
    ``GEMM_MAX_MNK`` where small-matrix kernels exist, else no cut."""
    return GEMM_MAX_MNK if architecture in SMALL_GEMM_ARCHS else 1 << 62


# ---------------------------------------------------------------- the plan: one argument
#: the integer tables that a product reads, in the order they are packed into the *plan*
PLAN_TABLES = ("pan_off", "chunks", "run_ptr", "runs", "vt_off", "lr_desc", "t_off",
               "task_chunk", "task_ptr", "task_lr", "shared")
#: the plan's header: ``wmax`` (the widest panel), then where each table starts and the last ends
PLAN_HEADER = len(PLAN_TABLES) + 2


def pack_plan(tables: dict, wmax: int) -> tuple[np.ndarray, dict]:
    """The tables named in ``PLAN_TABLES`` packed into one int64 array, and views of each table
    into it. Why: a call unboxes every array argument (about 0.1-0.2 us each), so one plan instead
    of eleven tables is most of a tiny product's fixed cost."""
    arrays = [np.asarray(tables[name], dtype=np.int64) for name in PLAN_TABLES]
    starts = PLAN_HEADER + np.concatenate([[0], np.cumsum([a.size for a in arrays])])
    plan = np.empty(int(starts[-1]), dtype=np.int64)
    plan[0] = wmax
    plan[1:PLAN_HEADER] = starts
    views = {}
    for name, a, s in zip(PLAN_TABLES, arrays, starts[:-1], strict=True):
        plan[s:s + a.size] = a.ravel()
        views[name] = plan[s:s + a.size].reshape(a.shape)
    return plan, views


@njit(**_OPTS)
def _unpack(plan):
    """The plan's tables (views, in ``PLAN_TABLES`` order) and ``wmax``."""
    s = plan[1:PLAN_HEADER]
    runs, lr = plan[s[3]:s[4]], plan[s[5]:s[6]]
    return (plan[s[0]:s[1]], plan[s[1]:s[2]], plan[s[2]:s[3]], runs.reshape((runs.size // 4, 4)),
            plan[s[4]:s[5]], lr.reshape((lr.size // 6, 6)), plan[s[6]:s[7]], plan[s[7]:s[8]],
            plan[s[8]:s[9]], plan[s[9]:s[10]], plan[s[10]:s[11]], plan[0])


# ---------------------------------------------------------------- dot-product micro-kernels
@njit(**_OPTS)
def _dot_2x1(a0, a1, x0, n, zero):
    s0 = zero
    s1 = zero
    for j in range(n):
        xj = x0[j]
        s0 += a0[j] * xj
        s1 += a1[j] * xj
    return s0, s1


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
        # 2 rows per tile: 4 rows (16 vector accumulators after LLVM's 4x interleave) spent
        # more on reducing them than on the row itself; 80-entry Vt rows ran at 12 GB/s, 36 with 2
        x0 = XT[q, c0:c0 + n]
        i = 0
        while i + 2 <= m:
            o = off + i * n
            s0, s1 = _dot_2x1(a[o:o + n], a[o + n:o + 2 * n], x0, n, zero)
            YT[q, r0 + i] += s0
            YT[q, r0 + i + 1] += s1
            i += 2
        if i < m:
            o = off + i * n
            YT[q, r0 + i] += _dot_1x1(a[o:o + n], x0, n, zero)


# ---------------------------------------------------------------- one block, one task
@njit(**_OPTS)
def _width(pan_off, chunks, c):
    """Columns of chunk ``c``'s panel (its segments side by side): its size over its rows."""
    return (pan_off[c + 1] - pan_off[c]) // (chunks[c + 1] - chunks[c])


@njit(**_OPTS)
def _vt_block(b, lr_desc, vt, vt_off, XT, T, t_off, zero):
    """``t_b = Vt_b X_b`` of low-rank block ``b`` for all vectors, into ``T[:, t_off[b]:]``."""
    c0, n, k = lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4]
    o = t_off[b]
    for q in range(XT.shape[0]):
        T[q, o:o + k] = zero
    _gemm_nt(vt, vt_off[b], k, n, XT, c0, T, o, zero)


@njit(**_OPTS)
def _run_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
              task_chunk, task_ptr, task_lr, wmax, XT, YT, T, zero):
    """All contributions to the rows of the chunks ``task_chunk[task]:task_chunk[task + 1]``."""
    p = XT.shape[0]
    for it in range(task_ptr[task], task_ptr[task + 1]):
        _vt_block(task_lr[it], lr_desc, vt, vt_off, XT, T, t_off, zero)
    Z = np.empty((p, wmax), dtype=YT.dtype)
    for c in range(task_chunk[task], task_chunk[task + 1]):
        lo, hi = chunks[c], chunks[c + 1]
        for r in range(run_ptr[c], run_ptr[c + 1]):
            source, src, ln, pos = runs[r, 0], runs[r, 1], runs[r, 2], runs[r, 3]
            for q in range(p):
                if source == 1:
                    Z[q, pos:pos + ln] = T[q, src:src + ln]
                else:
                    Z[q, pos:pos + ln] = XT[q, src:src + ln]
        width = _width(pan_off, chunks, c)
        for q in range(p):
            YT[q, lo:hi] = zero
        if width > 0:
            _gemm_nt(panel, pan_off[c], hi - lo, width, Z, 0, YT, lo, zero)


# ---------------------------------------------------------------- one vector
@njit(**_OPTS)
def _gather(runs, r0, r1, Z, X, T):
    """``Z``'s leading entries (1-d) or rows (2-d) from the runs ``r0:r1``: ranges of ``X`` or of
    ``T`` (source 1). Used by the one-vector route and by the BLAS route."""
    for r in range(r0, r1):
        source, src, ln, pos = runs[r, 0], runs[r, 1], runs[r, 2], runs[r, 3]
        if source == 1:
            Z[pos:pos + ln] = T[src:src + ln]
        else:
            Z[pos:pos + ln] = X[src:src + ln]


@njit(inline="always", **_OPTS)
def _vt_block1(b, lr_desc, vt, vt_off, x, t, t_off):
    """``t_b = Vt_b x_b`` of low-rank block ``b`` for one vector, into ``t[t_off[b]:]``. Inlined
    by numba: a call passes every array as its fields, 12-16 ns, about as long as the dot
    products of a small block (the smooth kernel's 156 blocks of rank 3-4: 6.7-7.4 -> 4.9-5.4
    us for the Vt phase)."""
    c0, n, k = lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4]
    rows_dot(vt, vt_off[b], k, n, x[c0:c0 + n], t, t_off[b])


@njit(**_OPTS)
def _run_task1(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
               task_chunk, task_ptr, task_lr, wmax, x, y, t, zero):
    """:func:`_run_task` for one vector: 1-d ``x``, ``y``, ``t`` and gather buffer."""
    for it in range(task_ptr[task], task_ptr[task + 1]):
        _vt_block1(task_lr[it], lr_desc, vt, vt_off, x, t, t_off)
    z = np.empty(wmax, dtype=y.dtype)
    for c in range(task_chunk[task], task_chunk[task + 1]):
        lo, hi = chunks[c], chunks[c + 1]
        _gather(runs, run_ptr[c], run_ptr[c + 1], z, x, t)
        width = _width(pan_off, chunks, c)
        if width > 0:
            rows_dot(panel, pan_off[c], hi - lo, width, z, y, lo)
        else:
            y[lo:hi] = zero


@njit(**_OPTS)
def _product_serial1(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                     task_chunk, task_ptr, task_lr, shared, wmax, x, y, t, zero):
    for s in range(shared.shape[0]):
        _vt_block1(shared[s], lr_desc, vt, vt_off, x, t, t_off)
    for task in range(task_chunk.shape[0] - 1):
        _run_task1(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                   task_chunk, task_ptr, task_lr, wmax, x, y, t, zero)


# ---------------------------------------------------------------- entry point
# The serial loop and the two prange loops appear once per route (here and in product_gemm) on
# purpose: one driver taking each route's block and task functions as arguments compiles, but
# numba cannot cache a caller that passes dispatchers (they are "dynamic globals"), so every
# process compiled for 14.8 s instead of loading the cache in 0.2-0.3 s (measured 2026-12-03).
@njit(**_OPTS)
def _workspace(t_off, p, dtype_of):
    """The buffer of every low-rank block's ``t`` for ``p`` vectors, ``(p, t_off[-1])``: the
    ``t`` of blocks stored one after another lie side by side, so one copy gathers them."""
    return np.empty((p, t_off[-1]), dtype=dtype_of.dtype)


@njit(**_OPTS)
def _product_serial(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                    task_chunk, task_ptr, task_lr, shared, wmax, XT, YT, T, zero):
    for s in range(shared.shape[0]):
        _vt_block(shared[s], lr_desc, vt, vt_off, XT, T, t_off, zero)
    for task in range(task_chunk.shape[0] - 1):
        _run_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                  task_chunk, task_ptr, task_lr, wmax, XT, YT, T, zero)


@njit(parallel=True, **_OPTS)
def product(panel, vt, plan, XT, YT, zero, parallel):
    """``YT = (H @ XT.T).T`` for ``XT (p, n)``, ``YT (p, m)``, C-contiguous; the tables come
    packed in ``plan`` (:func:`pack_plan`). First the shared blocks' ``t``, then the tasks; over
    the threads when ``parallel`` (``numba.set_num_threads`` sets how many), else on the calling
    thread, which saves starting a parallel region on small products. Only the two prange loops
    live here: any array expression in a parallel function becomes a parallel region of its own."""
    (pan_off, chunks, run_ptr, runs, vt_off, lr_desc, t_off, task_chunk, task_ptr, task_lr,
     shared, wmax) = _unpack(plan)
    T = _workspace(t_off, XT.shape[0], YT)
    if XT.shape[0] == 1:  # one vector: 1-d buffers, rows written once
        x, y, t = XT[0], YT[0], T[0]
        if not parallel:
            _product_serial1(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                             task_chunk, task_ptr, task_lr, shared, wmax, x, y, t, zero)
            return
        if shared.shape[0] > 0:
            for s in prange(shared.shape[0]):
                _vt_block1(shared[s], lr_desc, vt, vt_off, x, t, t_off)
        for task in prange(task_chunk.shape[0] - 1):
            _run_task1(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                       task_chunk, task_ptr, task_lr, wmax, x, y, t, zero)
        return
    if not parallel:
        _product_serial(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                        task_chunk, task_ptr, task_lr, shared, wmax, XT, YT, T, zero)
        return
    if shared.shape[0] > 0:  # an empty prange would still start a parallel region
        for s in prange(shared.shape[0]):
            _vt_block(shared[s], lr_desc, vt, vt_off, XT, T, t_off, zero)
    for task in prange(task_chunk.shape[0] - 1):
        _run_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                  task_chunk, task_ptr, task_lr, wmax, XT, YT, T, zero)


# ---------------------------------------------------------------- many vectors: BLAS GEMMs
@njit(**_OPTS)
def _gemm_rows(a, off, m, k, B, C, max_mnk):
    """``C = A @ B`` for ``A`` (m x k, row-major at ``a[off:]``), ``B`` (k x p), ``C`` (m x p), in
    pieces of rows of at most ``max_mnk`` multiply-adds each (see ``GEMM_MAX_MNK``)."""
    p = B.shape[1]
    step = max(1, min(m, max_mnk // max(1, k * p)))
    pieces = (m + step - 1) // step
    for i in range(pieces):
        r0 = i * m // pieces
        r1 = (i + 1) * m // pieces
        np.dot(a[off + r0 * k:off + r1 * k].reshape((r1 - r0, k)), B, C[r0:r1])


@njit(**_OPTS)
def _vt_gemm(b, lr_desc, vt, vt_off, X, T, t_off, max_mnk):
    """``T_b = Vt_b X_b`` of low-rank block ``b``: rows ``t_off[b]:`` of ``T (sum k, p)``."""
    c0, n, k = lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4]
    _gemm_rows(vt, vt_off[b], k, n, X[c0:c0 + n], T[t_off[b]:t_off[b] + k], max_mnk)


@njit(**_OPTS)
def _gemm_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
               task_chunk, task_ptr, task_lr, wmax, X, Y, T, max_mnk):
    """One task of :func:`product_gemm`: its blocks' ``T_b``, then ``Y_c = P_c Z_c`` per chunk,
    ``Z_c`` gathered by whole rows of ``X`` and ``T`` (the runs)."""
    for it in range(task_ptr[task], task_ptr[task + 1]):
        _vt_gemm(task_lr[it], lr_desc, vt, vt_off, X, T, t_off, max_mnk)
    Z = np.empty((wmax, X.shape[1]), dtype=Y.dtype)
    for c in range(task_chunk[task], task_chunk[task + 1]):
        lo, hi = chunks[c], chunks[c + 1]
        _gather(runs, run_ptr[c], run_ptr[c + 1], Z, X, T)
        width = _width(pan_off, chunks, c)
        if width > 0:
            _gemm_rows(panel, pan_off[c], hi - lo, width, Z[:width], Y[lo:hi], max_mnk)
        else:
            Y[lo:hi] = 0


@njit(**_OPTS)
def _gemm_serial(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                 task_chunk, task_ptr, task_lr, shared, wmax, X, Y, T, max_mnk):
    for s in range(shared.shape[0]):
        _vt_gemm(shared[s], lr_desc, vt, vt_off, X, T, t_off, max_mnk)
    for task in range(task_chunk.shape[0] - 1):
        _gemm_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                   task_chunk, task_ptr, task_lr, wmax, X, Y, T, max_mnk)


@njit(parallel=True, **_OPTS)
def product_gemm(panel, vt, plan, X, Y, parallel, max_mnk):
    """``Y = H @ X`` for many vectors, ``X (n, p)`` and ``Y (m, p)`` C-contiguous, on BLAS
    (``np.dot`` in numba calls scipy's BLAS): one GEMM per low-rank block, ``T_b = Vt_b X_b``,
    and one per chunk, ``Y_c = P_c Z_c``. Every operand is a contiguous slice (``X_b`` and
    ``Y_c`` are row ranges, ``T`` is ``(sum k, p)``). Same tasks and thread rule as
    :func:`product`: on 2 threads the tasks beat BLAS's own threads on these small GEMMs. With
    ``parallel``, the caller runs the BLAS on one thread (``hmat._threads.one_blas_thread``).
    ``max_mnk``: the row-piece limit of each GEMM (:func:`gemm_max_mnk`)."""
    (pan_off, chunks, run_ptr, runs, vt_off, lr_desc, t_off, task_chunk, task_ptr, task_lr,
     shared, wmax) = _unpack(plan)
    T = np.empty((t_off[-1], X.shape[1]), dtype=Y.dtype)
    if not parallel:
        _gemm_serial(panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                     task_chunk, task_ptr, task_lr, shared, wmax, X, Y, T, max_mnk)
        return
    if shared.shape[0] > 0:
        for s in prange(shared.shape[0]):
            _vt_gemm(shared[s], lr_desc, vt, vt_off, X, T, t_off, max_mnk)
    for task in prange(task_chunk.shape[0] - 1):
        _gemm_task(task, panel, pan_off, chunks, run_ptr, runs, vt, vt_off, lr_desc, t_off,
                   task_chunk, task_ptr, task_lr, wmax, X, Y, T, max_mnk)


@njit(cache=True, fastmath=True)
def rmatmat(panel, pan_off, chunks, seg_ptr, seg, vt, vt_off, lr_desc, t_off, X, Y):
    """``Y = H^T X`` for ``X (m, p)``, ``Y (n, p)`` (serial; adjoints, not the hot path):
    ``P_c^T`` scatters each chunk's rows into ``x`` (dense) or ``t`` (low rank), then
    ``Vt_b^T t_b``."""
    p = X.shape[1]
    Y[:, :] = 0.0
    T = np.zeros((t_off[-1], p), dtype=Y.dtype)
    for c in range(chunks.shape[0] - 1):
        lo, hi = chunks[c], chunks[c + 1]
        width = _width(pan_off, chunks, c)
        P = panel[pan_off[c]:pan_off[c] + (hi - lo) * width].reshape((hi - lo, width))
        for s in range(seg_ptr[c], seg_ptr[c + 1]):
            item, src, ln, pos = seg[s, 0], seg[s, 1], seg[s, 2], seg[s, 3]
            out = T[t_off[item]:t_off[item] + ln] if item >= 0 else Y[src:src + ln]
            for i in range(hi - lo):
                for j in range(ln):
                    a = P[i, pos + j]
                    for q in range(p):
                        out[j, q] += a * X[lo + i, q]
    for b in range(lr_desc.shape[0]):
        c0, n, k = lr_desc[b, 2], lr_desc[b, 3], lr_desc[b, 4]
        v = vt[vt_off[b]:vt_off[b] + k * n].reshape((k, n))
        for r in range(k):
            for j in range(n):
                a = v[r, j]
                for q in range(p):
                    Y[c0 + j, q] += a * T[t_off[b] + r, q]
