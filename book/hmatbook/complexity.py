"""Storage and product time of H-matrices against the matrix size n, with fitted log-log slopes.

The claim under test (arXiv 2409.07028, summary): memory falls from O(n^2) to O(k n log n). That
holds for matrices with the right structure (a smooth kernel: off-diagonal blocks of low numerical
rank); whether weight matrices have it is measured, not assumed. Storage is ``H.nbytes``; product
time is the median of repeated ``H @ x`` against ``A @ x`` with the dense float32 matrix.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import hmat

__all__ = ["smooth_kernel", "smooth_kernel_entries", "fit_slope", "measure_storage_and_time",
           "random_init_weight", "reference_curves"]


def smooth_kernel(n: int, eps: float = 1e-2) -> np.ndarray:
    """``K_ij = 1 / (eps + |x_i - x_j|)`` on ``n`` uniform points of [0, 1] (float32)."""
    x = (np.arange(n) + 0.5) / n
    return (1.0 / (eps + np.abs(x[:, None] - x[None, :]))).astype(np.float32)


def smooth_kernel_entries(n: int, eps: float = 1e-2):
    """The kernel of :func:`smooth_kernel` as an entry function ``A(rows, cols)`` (for ACA:
    never formed whole)."""
    x = (np.arange(n) + 0.5) / n

    def entries(rows, cols):
        return 1.0 / (eps + np.abs(x[rows][:, None] - x[cols][None, :]))

    return entries


def random_init_weight(n: int, seed: int = 0) -> np.ndarray:
    """An ``n x n`` weight as ``torch.nn.Linear`` initializes it: U(-1/sqrt(n), 1/sqrt(n))."""
    rng = np.random.default_rng(seed)
    b = 1.0 / np.sqrt(n)
    return rng.uniform(-b, b, size=(n, n)).astype(np.float32)


def fit_slope(n, y) -> float:
    """Least-squares slope of ``log y`` against ``log n`` (the exponent of a power law; used by
    Part II and Part III alike)."""
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if n.shape != y.shape or n.size < 2:
        raise ValueError("fit_slope needs two or more (n, y) pairs of equal length")
    if np.any(n <= 0) or np.any(y <= 0):
        raise ValueError("fit_slope needs positive n and y (log-log fit)")
    return float(np.polyfit(np.log(n), np.log(y), 1)[0])


def _median_time(f, repeats: int) -> float:
    f()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure_storage_and_time(H: hmat.HMatrix, A: np.ndarray | None, repeats: int = 20,
                             seed: int = 0) -> dict:
    """``H.nbytes``, dense bytes, and the median time of ``H @ x`` and (if ``A`` is given)
    ``A @ x`` for a random float32 vector, in seconds."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(H.shape[1]).astype(H.dtype)
    out = {"n": H.shape[0], "nbytes": H.nbytes, "dense_nbytes": H.dense_nbytes,
           "ratio": H.compression_ratio, "n_blocks": H.n_blocks, "max_rank": H.max_rank,
           "t_h": _median_time(lambda: H @ x, repeats)}
    if A is not None:
        a = np.ascontiguousarray(A, dtype=H.dtype)
        out["t_dense"] = _median_time(lambda: a @ x, repeats)
    return out


def reference_curves(n, y0: float, k: float = 1.0) -> dict:
    """``k n log2 n`` and ``n^2`` scaled to pass through ``y0`` at the first ``n``."""
    n = np.asarray(n, dtype=np.float64)
    nlogn = k * n * np.log2(n)
    return {"k n log n": y0 * nlogn / nlogn[0], "n^2": y0 * (n / n[0]) ** 2}
