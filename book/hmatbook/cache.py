"""Part III's cache-capacity page: does an H-matrix product save more time than bytes where the
dense matrix no longer fits in the last-level cache and the H-matrix does (claim
C-cache-capacity of ``data/claims.yml``)?

* :func:`cache_sizes`: this machine's caches, read at run time (``/sys``, else ``lscpu``).
* :func:`classifier_like`: the block structure of a rank-30 H-matrix of a 1000 x 1280 layer (the
  MobileNetV2 classifier's shape; a seeded matrix, so no weights are needed), scaled by a factor,
  with seeded random factors; :func:`smooth_kernel`: ``1/(1+|i-j|)`` built by ACA at a tolerance.
* :func:`paired_excess`: ``excess = time saving - bytes saving`` of one product, from paired
  rounds (H and dense alternate), with a distribution-free 95 % interval of the median.
* :func:`regime` and :func:`verdict`: the pre-registered criterion, applied to a sweep.
"""

from __future__ import annotations

import functools
import re
import subprocess
import time
from pathlib import Path

import numpy as np

import hmat
from hmat import limit_threads

from . import ledger
from .bench import calls_for, index_kernel_entries, kernel_matrix
from .ledger import Verdict
from .timing import median_interval

__all__ = ["parse_size", "cache_sizes", "classifier_like", "smooth_kernel", "as_dtype",
           "paired_excess", "dense_like", "regime", "verdict", "REGIMES", "THESIS_LAPTOP"]

#: the thesis' laptop (i7-8550U): L3 of 8 MB, dense 1000 x 1280 classifier in double precision
THESIS_LAPTOP = {"cpu": "Intel i7-8550U", "l3_bytes": 8 * 2**20, "dense_bytes": 1000 * 1280 * 8}
REGIMES = ("both fit", "only H fits", "neither fits")
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30}


def parse_size(text: str) -> int:
    """Bytes of a cache size as ``/sys`` or ``lscpu`` write it ("32768K", "32 MiB", "1024")."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*(\(.*\))?\s*", str(text))
    if m is None or m.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read a cache size from {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def cache_sizes(base: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> dict:
    """Data/unified cache sizes of this machine in bytes: ``{"L1": .., "L2": .., "L3": ..,
    "llc": .., "source": ..}`` (``llc`` is the last level; per instance, as the OS reports it)."""
    out = {}
    for d in sorted(Path(base).glob("index*")):
        try:
            level, kind, size = ((d / k).read_text().strip() for k in ("level", "type", "size"))
        except OSError:
            continue
        if kind in ("Data", "Unified"):
            out[f"L{level}"] = parse_size(size)
    source = str(base)
    if not out:  # no /sys (not Linux, container): lscpu's summary is per socket
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        for level, size in re.findall(r"^L([123])d? cache:\s*(\S+\s*\S*)", text, re.M):
            out[f"L{level}"] = parse_size(size.split("(")[0])
        source = "lscpu"
    if not out:
        raise RuntimeError("cache sizes unavailable: neither /sys nor lscpu reports them")
    out["llc"] = out[max(out)]
    out["source"] = source
    return out


@functools.cache
def _base_blocks(rank: int, seed: int):
    """Leaves of ``compress(seeded 1000 x 1280, rank=rank)``: (kind, r0, r1, c0, c1, k)."""
    A = np.random.default_rng(seed).standard_normal((1000, 1280))
    H = hmat.compress(A, rank=rank)
    return tuple((b.kind, b.row_start, b.row_stop, b.col_start, b.col_stop, b.rank)
                 for b in H.blocks())


def classifier_like(scale: float, *, rank: int = 30, dtype="float64", seed: int = 0):
    """The classifier's block structure at ``rank`` scaled by ``scale`` (shape about ``1000 s x
    1280 s``): block edges scaled and rounded, low-rank blocks keep ``rank`` where that stores
    less than the dense block (else dense), factors seeded standard normal."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    blocks = _base_blocks(int(rank), int(seed))
    rng = np.random.default_rng(seed + 1)
    m, n = round(1000 * scale), round(1280 * scale)
    lowrank, dense = [], []
    for kind, r0, r1, c0, c1, k in blocks:
        a0, a1, b0, b1 = round(r0 * scale), round(r1 * scale), round(c0 * scale), round(c1 * scale)
        bm, bn = a1 - a0, b1 - b0
        if bm == 0 or bn == 0:
            continue  # a block scaled to nothing
        if kind == "lowrank" and k * (bm + bn) < bm * bn:
            lowrank.append((a0, b0, rng.standard_normal((bm, k)) / np.sqrt(k),
                            rng.standard_normal((k, bn))))
        else:
            dense.append((a0, b0, rng.standard_normal((bm, bn))))
    return hmat.HMatrix.from_blocks((m, n), lowrank, dense, dtype=np.dtype(dtype))


def as_dtype(H, dtype):
    """The same H-matrix stored in ``dtype`` (a product in float32 reads float32 factors)."""
    dtype = np.dtype(dtype)
    if H.dtype == dtype:
        return H
    lr_desc, lr_data, d_desc, d_data = H.block_form()
    return hmat.HMatrix(H.shape, lr_desc, lr_data.astype(dtype), d_desc, d_data.astype(dtype),
                        H.row_perm, H.col_perm, H.info)


@functools.cache
def _kernel_h64(n: int, tol: float):
    return hmat.compress(index_kernel_entries("inverse"), shape=(n, n), tol=tol, method="aca")


def dense_like(H, seed: int = 0) -> np.ndarray:
    """A seeded dense matrix of ``H``'s shape and dtype: what the dense product reads (its time
    does not depend on the values; forming ``H.to_dense()`` at 160 MB took 9 s)."""
    return np.random.default_rng(seed).random(H.shape, dtype=H.dtype)


def smooth_kernel(n: int, *, tol: float = 1e-6, dtype="float64"):
    """``(H, W)``: the H-matrix of ``1/(1+|i-j|)`` (ACA from entries at ``tol``) and the dense
    matrix, both in ``dtype``."""
    return as_dtype(_kernel_h64(int(n), float(tol)), dtype), kernel_matrix(int(n), dtype=dtype)


def paired_excess(H, W, *, rounds: int = 9, min_time: float = 0.01, threads: int | None = None,
                  seed: int = 0) -> dict:
    """One vector, ``H @ x`` against ``W @ x`` in ``rounds`` paired rounds (which goes first
    alternates): time saving ``1 - t_H/t_W`` and ``excess = time saving - bytes saving`` with the
    95 % interval of the median over rounds (needs ``rounds >= 6``). On one thread
    (``threads=1``) the clock is the thread's CPU time, which other processes on a shared machine
    do not inflate; otherwise wall time (the BLAS' other threads do not run on this thread)."""
    W = np.ascontiguousarray(W)
    if H.shape != W.shape or H.dtype != W.dtype:
        raise ValueError(f"H ({H.shape}, {H.dtype}) and W ({W.shape}, {W.dtype}) must have one "
                         "shape and dtype")
    x = np.random.default_rng(seed).standard_normal(W.shape[1]).astype(W.dtype)
    fh, fw = (lambda: H @ x), (lambda: W @ x)
    clock = time.thread_time if threads == 1 else time.perf_counter
    ratios, th, tw = [], [], []
    with limit_threads(threads):
        nh, nw = calls_for(fh, min_time), calls_for(fw, min_time)
        for r in range(rounds):
            pair = []
            for f, n in ((fh, nh), (fw, nw))[:: 1 if r % 2 == 0 else -1]:
                t0 = clock()
                for _ in range(n):
                    f()
                pair.append((clock() - t0) / n)
            t_h, t_w = pair if r % 2 == 0 else pair[::-1]
            th.append(t_h)
            tw.append(t_w)
            ratios.append(t_h / t_w)
    med, lo, hi = median_interval(ratios)
    bytes_saving = 1.0 - H.nbytes / W.nbytes
    return {"shape": f"{W.shape[0]} x {W.shape[1]}", "dtype": str(W.dtype),
            "threads": threads or hmat.available_threads(),
            "dense_bytes": int(W.nbytes), "h_bytes": int(H.nbytes),
            "bytes_saving": bytes_saving, "time_saving": 1.0 - med,
            "time_saving_lo": 1.0 - hi, "time_saving_hi": 1.0 - lo,
            "excess": (1.0 - med) - bytes_saving,
            "excess_lo": (1.0 - hi) - bytes_saving, "excess_hi": (1.0 - lo) - bytes_saving,
            "us_h": 1e6 * float(np.median(th)), "us_dense": 1e6 * float(np.median(tw)),
            "rounds": rounds, "clock": "thread CPU" if threads == 1 else "wall"}


def regime(dense_bytes: int, h_bytes: int, llc: int) -> str:
    """Where a size lies against the last-level cache: one of :data:`REGIMES` (an H-matrix
    larger than the dense matrix that does not fit counts as "neither fits")."""
    if dense_bytes <= llc and h_bytes <= llc:
        return "both fit"
    if h_bytes <= llc < dense_bytes:
        return "only H fits"
    return "neither fits"


def verdict(rows, llc: int) -> Verdict:
    """The criterion of C-cache-capacity (written before the run, ``data/claims.yml``, whose
    thresholds it reads) on the float64 rows of a sweep (each with dense_bytes, h_bytes,
    excess_lo, excess_hi)."""
    t_first = ledger.threshold("C-cache-capacity", "excess_only_h_fits")
    t_fit = ledger.threshold("C-cache-capacity", "excess_both_fit")
    rows = [r for r in rows if r["dtype"] == "float64"]
    first = [r for r in rows if regime(r["dense_bytes"], r["h_bytes"], llc) == "only H fits"]
    fit = [r for r in rows if regime(r["dense_bytes"], r["h_bytes"], llc) == "both fit"]

    def iv(r):
        return (f"{r['shape']} ({r['dense_bytes'] / 2**20:.1f} MB dense): excess "
                f"{100 * r['excess']:+.1f} points [{100 * r['excess_lo']:+.1f}, "
                f"{100 * r['excess_hi']:+.1f}]")

    above = [r for r in first if r["excess_lo"] > t_first]
    fit_above = [r for r in fit if r["excess_lo"] > t_fit]
    text = (f"last-level cache {llc / 2**20:.0f} MB; {len(first)} float64 size(s) where only H "
            f"fits, {len(fit)} where both fit. ")
    if not first:
        return Verdict("not testable here", text + "No size of the sweep lies where the dense "
                       "matrix exceeds the last-level cache and the H-matrix fits")
    if fit_above:
        v = "not reproduced"
        text += "Excess above 0 where both fit: " + "; ".join(iv(r) for r in fit_above)
    elif all(r["excess_hi"] <= t_first for r in first):
        v = "not reproduced"
        text += "Excess at or below 0 at every size where only H fits: " + "; ".join(
            iv(r) for r in first)
    elif above:
        v = "reproduced"
        text += ("Excess above 0 where only H fits: " + "; ".join(iv(r) for r in above)
                 + "; not above 0 at any size where both fit")
    else:
        v = "inconclusive"
        text += ("Where only H fits, no excess interval lies above 0 and not all lie at or below "
                 "it: " + "; ".join(iv(r) for r in first))
    best = max(first, key=lambda r: r["excess"])
    return Verdict(v, text, value=best["excess"], interval=(best["excess_lo"], best["excess_hi"]))
