"""Adaptive storage precision against the float32 H-matrix: bytes, error and product time.

``HMAT_DATA_DIR=/path/to/data python tests/bench/precision_report.py [--out results.json]``

For the MobileNetV2 classifier weight (1000 x 1280, when its weights are available) and the
smooth kernel ``1 / (1 + |i - j|)`` (n = 1024), at each tolerance: the adaptive build in float32
(``precision="float32"``) and with adaptive precision (``precision="adaptive"``): stored bytes,
exact relative Frobenius error against the matrix, and the product time ratio
``t(H_adaptive @ x) / t(H_float32 @ x)`` for one float32 vector: the median over paired rounds
(each round times a batch of both, the order alternating), on one thread and on the default
threads, next to the bytes ratio.
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np

import hmat
from hmatbook import bench

TOLS = (1e-1, 3e-2, 1e-2, 1e-3)


def paired_ratio(f, g, rounds=21, min_time=0.02):
    """Median over rounds of (time per call of f) / (time per call of g), order alternating."""
    n = max(bench.calls_for(f, min_time), bench.calls_for(g, min_time))
    ratios = []
    for r in range(rounds):
        times = {}
        for name, fn in ((("f", f), ("g", g)) if r % 2 == 0 else (("g", g), ("f", f))):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[name] = (time.perf_counter() - t0) / n
        ratios.append(times["f"] / times["g"])
    return float(np.median(ratios)), float(np.percentile(ratios, 25)), float(
        np.percentile(ratios, 75))


def measure(name, A, tols=TOLS, threads=(1, None)):
    A64 = A.astype(np.float64)
    norm = np.linalg.norm(A64)
    x = np.random.default_rng(0).standard_normal(A.shape[1]).astype(np.float32)
    rows = []
    for tol in tols:
        H32 = hmat.compress(A, tol=tol, adaptive=True, precision="float32")
        t0 = time.perf_counter()
        HA = hmat.compress(A, tol=tol, adaptive=True, precision="adaptive")
        build = time.perf_counter() - t0
        row = dict(matrix=name, tol=tol, bytes_f32=H32.nbytes, bytes_adaptive=HA.nbytes,
                   bytes_ratio=HA.nbytes / H32.nbytes, dense_f32=A.size * 4,
                   err_f32=float(np.linalg.norm(A64 - H32.to_dense()) / norm),
                   err_adaptive=float(np.linalg.norm(A64 - HA.to_dense()) / norm),
                   by_storage=HA.bytes_by_storage(), build_s_adaptive=build)
        for th in threads:
            with hmat.limit_threads(th):
                med, q1, q3 = paired_ratio(functools.partial(HA.matvec, x),
                                           functools.partial(H32.matvec, x))
            key = "1" if th == 1 else "default"
            row[f"time_ratio_{key}"] = med
            row[f"time_ratio_{key}_iqr"] = (q1, q3)
        rows.append(row)
        print(f"{name:13s} tol={tol:7.0e}  bytes f32 {row['bytes_f32']:9d} "
              f"({row['bytes_f32'] / row['dense_f32']:6.1%} of dense)  adaptive "
              f"{row['bytes_adaptive']:9d} ({row['bytes_adaptive'] / row['dense_f32']:6.1%})  "
              f"bytes ratio {row['bytes_ratio']:.3f}  err f32 {row['err_f32']:.3e} "
              f"adaptive {row['err_adaptive']:.3e}  time ratio 1 thread "
              f"{row['time_ratio_1']:.3f} default {row['time_ratio_default']:.3f}  "
              f"{ {k: v for k, v in row['by_storage'].items() if v} }", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the records as JSON here")
    args = ap.parse_args()
    print("threads available:", hmat.available_threads())
    rows = []
    W = bench.mobilenet_classifier()
    if W is None:
        print("mobilenet_v2: weights unavailable (set HMAT_DATA_DIR); not measured")
    else:
        rows += measure("mobilenet_v2", W)
    rows += measure("kernel_1024", bench.kernel_matrix(1024))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
