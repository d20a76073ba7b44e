"""STREAM-like memory kernels (copy, triad) for the roofline of Part III, in numba so that they
run on all threads like the H-matrix kernels (numpy's copy runs on one)."""

from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True)
def copy(a, b):
    """``a[:] = b``: 2 arrays moved (STREAM counts 16 bytes per float64 element)."""
    for i in prange(a.shape[0]):
        a[i] = b[i]


@njit(parallel=True, cache=True)
def triad(a, b, c, s):
    """``a[:] = b + s c``: 3 arrays moved (STREAM counts 24 bytes per float64 element)."""
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@njit(cache=True)
def copy_serial(a, b):
    for i in range(a.shape[0]):
        a[i] = b[i]


@njit(cache=True)
def triad_serial(a, b, c, s):
    for i in range(a.shape[0]):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=True, fastmath=True)
def read(a):
    """``sum(a)``: 1 array read, nothing written: the roof of a kernel that mostly reads, as a
    matrix-vector product does."""
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


@njit(cache=True, fastmath=True)
def read_serial(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s
