"""Thread limits in one place: numba's pool, the BLAS (threadpoolctl) and torch's intra-op pool.

Builds call many small SVD/QR routines, where threaded BLAS gains little and, on a busy machine,
loses 10-100x to oversubscription (kernel 1024, tol 1e-6: 13-39 s with all BLAS threads under
load, 0.26 s with one); measurements compare kernels on a stated number of threads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

__all__ = ["limit_threads", "blas_threads", "available_threads", "one_blas_thread"]


def available_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check(n, name: str) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not hasattr(n, "__index__") or n < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")
    return int(n)


@functools.lru_cache(maxsize=1)
def _controller():
    """One threadpoolctl controller per process (creating it scans the loaded libraries)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.lru_cache(maxsize=1)
def _blas_libraries() -> tuple:
    """The loaded BLAS libraries (threadpoolctl controllers), found once, after loading the one
    that numba's ``np.dot`` calls (scipy's)."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return tuple(lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas")


@functools.lru_cache(maxsize=1)
def blas_architecture() -> str | None:
    """The kernel family of the BLAS that numba's ``np.dot`` calls, scipy's (OpenBLAS's
    "architecture", e.g. "Haswell" or "SkylakeX"); None when threadpoolctl cannot tell."""
    libs = [lib for lib in _blas_libraries() if getattr(lib, "architecture", None)]
    scipys = [lib for lib in libs if f"scipy.libs{os.sep}" in lib.filepath]
    return str((scipys or libs)[0].architecture) if libs else None


@contextlib.contextmanager
def one_blas_thread():
    """Run the body with every BLAS on one thread, for BLAS calls made inside numba's parallel
    tasks: a threaded OpenBLAS called from an OpenMP region starts its own threads beside the
    region's (it prints "Detect OpenMP Loop and this application may hang"). A few microseconds
    (ctypes calls), so only for products that are worth a parallel region."""
    libs = [(lib, lib.num_threads) for lib in _blas_libraries()]
    for lib, n in libs:
        if n > 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in libs:
            if n > 1:
                lib.set_num_threads(n)


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the body with at most ``n`` BLAS threads (None: leave the BLAS as it is)."""
    n = _check(n, "blas_threads")
    if n is None:
        yield
        return
    with _controller().limit(limits=n, user_api="blas"):
        yield


@contextlib.contextmanager
def limit_threads(n: int | None):
    """Run the body with at most ``n`` threads in numba, the BLAS and (if imported) torch.

    ``None`` leaves every pool as it is. Products then use ``min(n, NUMBA_NUM_THREADS)`` threads.
    """
    n = _check(n, "threads")
    if n is None:
        yield
        return
    import numba

    old = numba.get_num_threads()
    torch = sys.modules.get("torch")
    old_torch = torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits  # a fresh scan: torch may have loaded its own BLAS

    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(old)
        if torch is not None:
            torch.set_num_threads(old_torch)
