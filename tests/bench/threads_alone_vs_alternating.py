"""One vector on the MobileNetV2 classifier, default threads: numpy's W @ x, the product's serial
path and its parallel path, each timed ALONE (a 0.3 s pause before each block lets every spinning
thread sleep) and in the paired alternating rounds of the book (H/W ratios).

Why: at default threads H @ x is slower than W @ x. This separates the two explanations: numpy's
(OpenBLAS) threads spin between calls, so its two-thread product starts at once, while hmat's
OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE, hmat._kernels._start_threads) and must be woken.
Run twice, with and without OPENBLAS_THREAD_TIMEOUT=4 (OpenBLAS's threads then sleep almost at
once): ``HMAT_DATA_DIR=../shared/data python tests/bench/threads_alone_vs_alternating.py out.json``
(about 1 minute each).
"""
import json
import os
import sys
import time

import numpy as np
from serial_vs_parallel import _seconds  # beside this script: the same per-call timer

import hmat
from hmat import _kernels
from hmatbook import bench


def per_call(fn):
    return _seconds(fn, n=300)

W0 = bench.get_matrix("mobilenet_v2")
if W0 is None:
    raise SystemExit("MobileNetV2 weights unavailable: set HMAT_DATA_DIR to the data folder")
rng = np.random.default_rng(0)
out = {"env": {k: os.environ.get(k) for k in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT",
                                             "OMP_WAIT_POLICY")},
       "wait": _kernels.WAIT_POLICY}
for dt in (np.float32, np.float64):
    W = W0.astype(dt)
    x = rng.standard_normal(W.shape[1]).astype(dt)
    for rank in (30, 70):
        H = hmat.compress(W, rank=rank)
        XT, YT = x.reshape(1, -1), np.empty((1, W.shape[0]), dt)
        static, zero = H._kernel_args(np.dtype(dt))
        def ser(static=static, XT=XT, YT=YT, zero=zero):
            _kernels.product(*static, XT, YT, zero, False)

        def par(static=static, XT=XT, YT=YT, zero=zero):
            _kernels.product(*static, XT, YT, zero, True)

        def den(W=W, x=x):
            return W @ x
        alone = {k: [] for k in ("dense", "serial", "parallel")}
        alt = {k: [] for k in ("serial", "parallel")}
        for _ in range(7):
            for k, f in (("dense", den), ("serial", ser), ("parallel", par)):
                time.sleep(0.3)  # let every spinning thread go to sleep
                alone[k].append(per_call(f))
            for k, f in (("serial", ser), ("parallel", par)):
                td = per_call(den)
                alt[k].append(per_call(f) / td)
        r = {f"alone_{k}_us": round(1e6 * float(np.median(v)), 1) for k, v in alone.items()}
        r.update({f"alt_ratio_{k}": round(float(np.median(v)), 2) for k, v in alt.items()})
        r["bytes_ratio"] = round(H.nbytes / W.nbytes, 3)
        out[f"{np.dtype(dt).name}_r{rank}"] = r
        print(np.dtype(dt).name, rank, r, flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
