"""The thesis' timing protocol: N matrix-vector products with the H-matrix and N with the dense
matrix, alternating, with the same vector, in the same process; time saving ``1 - t_H/t_dense``.

The N products of each kind are split into ``rounds`` chunks; H and dense chunks alternate (and
swap which goes first every round), so slow drifts of the machine hit both alike. Totals give the
thesis' number; the median over rounds of the per-product time is the robust one. The vector is
float32, as in the network. ``threads=`` runs a measurement on a given number of threads
(numba kernels, BLAS and torch alike, by :func:`hmat.limit_threads`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from hmat import limit_threads

__all__ = ["TimingResult", "time_products", "time_saving", "median_interval", "saving_interval"]


def time_saving(t_h: float, t_dense: float) -> float:
    """``1 - t_H / t_dense`` (a fraction; negative when H is slower)."""
    if not t_dense > 0:
        raise ValueError(f"t_dense must be > 0, got {t_dense}")
    return 1.0 - t_h / t_dense


@dataclass(frozen=True)
class TimingResult:
    """One measurement of the protocol; times in seconds, per-product times in microseconds."""

    n_products: int
    rounds: int
    threads: int | None  # None: the process' default (all cores)
    t_h_total: float
    t_dense_total: float
    us_h_median: float
    us_dense_median: float
    ratio_median: float = float("nan")  # median over rounds of t_H / t_dense (paired rounds)
    ratios: tuple = ()  # t_H / t_dense of every paired round

    @property
    def us_h(self) -> float:
        """Mean microseconds per H product (total / N)."""
        return 1e6 * self.t_h_total / self.n_products

    @property
    def us_dense(self) -> float:
        return 1e6 * self.t_dense_total / self.n_products

    @property
    def time_saving(self) -> float:
        """The thesis' number, from the totals: ``1 - t_H / t_dense``."""
        return time_saving(self.t_h_total, self.t_dense_total)

    @property
    def time_saving_median(self) -> float:
        return time_saving(self.us_h_median, self.us_dense_median)

    @property
    def time_saving_paired(self) -> float:
        """``1 - median_r(t_H[r] / t_dense[r])`` over the rounds: each H chunk is compared with
        the dense chunk next to it in time, so load changes on a shared machine largely cancel.
        The most robust of the three estimates."""
        return 1.0 - self.ratio_median

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(us_h=self.us_h, us_dense=self.us_dense, time_saving=self.time_saving,
                 time_saving_median=self.time_saving_median,
                 time_saving_paired=self.time_saving_paired)
        return d


def _loop(apply, x, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        apply(x)
    return time.perf_counter() - t0


def time_products(H, W, n_products: int = 100_000, *, x=None, rounds: int = 10,
                  threads: int | None = None, seed: int = 0, warmup: int = 20) -> TimingResult:
    """Time ``n_products`` products ``H @ x`` and as many ``W @ x``, alternating in ``rounds``.

    ``H`` is anything with ``@`` (an :class:`hmat.HMatrix`, another operator, or an array);
    ``W`` is the dense matrix (converted to C-contiguous float32 once, outside the timing).
    ``x`` defaults to a seeded standard-normal float32 vector; the same ``x`` is used for all.
    """
    if isinstance(n_products, bool) or not isinstance(n_products, (int, np.integer)):
        raise TypeError(f"n_products must be a positive integer, got {n_products!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)):
        raise TypeError(f"rounds must be a positive integer, got {rounds!r}")
    if n_products < 1 or rounds < 1:
        raise ValueError(f"n_products and rounds must be >= 1, got {n_products}, {rounds}")
    rounds = int(min(rounds, n_products))
    dense = np.ascontiguousarray(np.asarray(W, dtype=np.float32))
    if dense.ndim != 2:
        raise ValueError(f"W must be a 2-D matrix, got shape {dense.shape}")
    if tuple(getattr(H, "shape", dense.shape)) != dense.shape:
        raise ValueError(f"H has shape {H.shape}, W has shape {dense.shape}")
    if x is None:
        x = np.random.default_rng(seed).standard_normal(dense.shape[1]).astype(np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape != (dense.shape[1],):
        raise ValueError(f"x must have shape ({dense.shape[1]},), got {x.shape}")

    def apply_h(v):
        return H @ v

    def apply_d(v):
        return dense @ v

    sizes = np.full(rounds, n_products // rounds, dtype=np.int64)
    sizes[: n_products % rounds] += 1
    t_h, t_d = np.zeros(rounds), np.zeros(rounds)
    with limit_threads(threads):
        _loop(apply_h, x, warmup)  # compile / warm caches, not timed
        _loop(apply_d, x, warmup)
        for r, n in enumerate(sizes):
            if r % 2 == 0:
                t_h[r] = _loop(apply_h, x, int(n))
                t_d[r] = _loop(apply_d, x, int(n))
            else:
                t_d[r] = _loop(apply_d, x, int(n))
                t_h[r] = _loop(apply_h, x, int(n))
    return TimingResult(
        n_products=int(n_products), rounds=rounds, threads=threads,
        t_h_total=float(t_h.sum()), t_dense_total=float(t_d.sum()),
        us_h_median=float(np.median(1e6 * t_h / sizes)),
        us_dense_median=float(np.median(1e6 * t_d / sizes)),
        ratio_median=float(np.median(t_h / t_d)),
        ratios=tuple(float(v) for v in t_h / t_d),
    )


def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """``(median, lo, hi)`` with a distribution-free interval for the median: the order
    statistics whose binomial coverage is at least ``level`` (needs >= 6 values for 95 %)."""
    from scipy.stats import binom

    v = np.sort(np.asarray(values, dtype=float).ravel())
    n = v.size
    if n == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a non-empty set of finite numbers, got {n} values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    # largest j with P(B <= j - 1) <= (1 - level) / 2, B ~ Binomial(n, 1/2): [v_(j), v_(n+1-j)]
    j = int(binom.ppf((1 - level) / 2, n, 0.5))
    if j >= 1 and binom.cdf(j - 1, n, 0.5) > (1 - level) / 2:
        j -= 1
    if j < 1:
        raise ValueError(f"{n} values are too few for a {100 * level:g} % interval of the "
                         "median (95 % needs 6 or more)")
    return float(np.median(v)), float(v[j - 1]), float(v[n - j])


def saving_interval(results, level: float = 0.95) -> tuple[float, float, float]:
    """Time saving ``1 - t_H/t_dense`` (a fraction) as ``(estimate, lo, hi)``: the median of the
    paired-round ratios of one or more :class:`TimingResult` (repeats pooled) and the
    distribution-free interval of that median. A slowdown gives a negative saving."""
    if isinstance(results, TimingResult):
        results = [results]
    ratios = [r for res in results for r in res.ratios]
    med, lo, hi = median_interval(ratios, level)
    return 1.0 - med, 1.0 - hi, 1.0 - lo
