"""Test matrices with known structure, for examples, tests and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["inverse_distance", "exponential_decay"]


def inverse_distance(n: int, eps: float = 1.0, dtype=np.float64) -> np.ndarray:
    """The smooth kernel ``K_ij = 1 / (eps + |i - j|)`` (``eps`` 1: the README's matrix): its
    off-diagonal blocks have quickly decaying singular values."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    i = np.arange(n, dtype=np.float64)
    return (1.0 / (eps + np.abs(i[:, None] - i[None, :]))).astype(dtype)


def exponential_decay(m: int, n: int | None = None, rate: float = 8.0, seed: int = 0,
                      dtype=np.float64) -> np.ndarray:
    """A random ``m x n`` matrix with singular values ``exp(-i / rate)`` (random orthogonal
    singular vectors, seeded): global low rank without any block structure."""
    n = m if n is None else n
    for name, v in (("m", m), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    rng = np.random.default_rng(seed)
    k = min(m, n)
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return ((q1 * np.exp(-np.arange(k) / rate)) @ q2.T).astype(dtype)
