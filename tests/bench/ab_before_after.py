"""Before/after of a kernel change (issue 11), for ``tests/bench/changes.json``.

Run it once with the old checkout first on the path and once without, alternating::

    git worktree add --detach /tmp/before <old commit>
    PYTHONPATH=/tmp/before python tests/bench/ab_before_after.py > before.json
    python tests/bench/ab_before_after.py > after.json

Prints JSON: the H/dense time ratio (median and 3rd lowest / 3rd highest of 11 paired rounds) of
the issue's table (MobileNetV2 classifier, ranks 30/50/70, float32 1/8/64/256 and float64 1/64
vectors, one and default threads), the smooth kernel (tol 1e-6, float32) and the fixed cost of a
tiny product. One thread: the calling thread's CPU time (robust to other processes); default
threads: wall time. Arguments select parts: table, one (the table's one-vector rows only),
kernel, tiny (default: table, kernel, tiny).
"""

from __future__ import annotations

import json
import os
import sys
import time
import timeit

import numpy as np

import hmat
from hmat import limit_threads
from hmatbook import bench


def paired(fh, fd, rounds=11, min_time=0.01, cpu=False):
    """Ratio t(fh)/t(fd) per round (the order alternates): [median, 3rd lowest, 3rd highest]."""
    clock = time.thread_time if cpu else time.perf_counter
    nh, nd = bench.calls_for(fh, min_time), bench.calls_for(fd, min_time)
    rs = []
    for r in range(rounds):
        order = [(fh, nh), (fd, nd)] if r % 2 == 0 else [(fd, nd), (fh, nh)]
        ts = []
        for f, n in order:
            t0 = clock()
            for _ in range(n):
                f()
            ts.append((clock() - t0) / n)
        th, td = ts if r % 2 == 0 else ts[::-1]
        rs.append(th / td)
    rs = np.sort(rs)
    return [round(float(np.median(rs)), 3), round(float(rs[2]), 3), round(float(rs[-3]), 3)]


def main(which):
    out = {"hmat": hmat.__file__, "load": os.getloadavg()[0]}
    if "table" in which or "one" in which:
        W0 = bench.get_matrix("mobilenet_v2", required=True)
        for dt in ("float32", "float64"):
            W = np.ascontiguousarray(W0.astype(dt))
            for rank in (30, 50, 70):
                H = hmat.compress(W, rank=rank)
                out[f"bytes {dt} r{rank}"] = round(H.nbytes / W.nbytes, 3)
                ps = (1, 8, 64, 256) if dt == "float32" else (1, 64)
                for p in (1,) if "table" not in which else ps:
                    X = np.random.default_rng(0).standard_normal((W.shape[1], p)).astype(dt)
                    X = np.ascontiguousarray(X[:, 0]) if p == 1 else X
                    for th in (None, 1):
                        with limit_threads(th):
                            out[f"{dt} r{rank} p{p} t{th or 'all'}"] = paired(
                                lambda H=H, X=X: H @ X, lambda W=W, X=X: W @ X, cpu=th == 1)
    if "kernel" in which:
        K = bench.kernel_matrix(1024).astype(np.float32)
        Hk = hmat.compress(K, tol=1e-6)
        out["bytes kernel1024 f32"] = round(Hk.nbytes / K.nbytes, 3)
        x = np.ones(1024, np.float32)
        for th in (None, 1):
            with limit_threads(th):
                out[f"kernel1024 f32 p1 t{th or 'all'}"] = paired(lambda: Hk @ x, lambda: K @ x,
                                                                  cpu=th == 1)
    if "tiny" in which:
        Ws = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
        Hs = hmat.compress(Ws, rank=2, leaf_size=4)
        xs = np.ones(16, np.float32)
        best = [1e9, 1e9]
        for _ in range(7):
            for i, f in enumerate((lambda: Hs @ xs, lambda: Ws @ xs)):
                t = min(timeit.repeat(f, number=3000, repeat=3, timer=time.thread_time)) / 3000
                best[i] = min(best[i], 1e6 * t)
        out["tiny us H, numpy"] = [round(b, 2) for b in best]
    out["load_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] or ["table", "kernel", "tiny"])))
