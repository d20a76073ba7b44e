"""One vector on the MobileNetV2 classifier: the product kernel's serial path against its parallel
path, each as a ratio to numpy's ``W @ x`` in paired rounds, on the default threads and on one.

Shows whether going parallel pays for one vector (the choice ``PARALLEL_MIN_WORK`` makes).
Run: ``HMAT_DATA_DIR=../shared/data python tests/bench/serial_vs_parallel.py`` (about 1 minute).
"""

import time

import numpy as np

import hmat
from hmat import _kernels, limit_threads
from hmatbook import bench


def _seconds(fn, n=200):
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _ratios(W, x, H, rounds):
    """Median H/W time ratios of the serial and the parallel path, and the dense time."""
    XT, YT = x.reshape(1, -1), np.empty((1, W.shape[0]), W.dtype)
    static, zero = H._kernel_args(W.dtype)
    ratios = {False: [], True: []}
    dense = []
    for _ in range(rounds):
        td = _seconds(lambda: W @ x)
        dense.append(td)
        for flag in ratios:
            ratios[flag].append(
                _seconds(lambda f=flag: _kernels.product(*static, XT, YT, zero, f)) / td)
    return np.median(ratios[False]), np.median(ratios[True]), np.median(dense)


def main(rounds: int = 9) -> None:
    W0 = bench.get_matrix("mobilenet_v2")
    if W0 is None:
        raise SystemExit("MobileNetV2 weights unavailable: set HMAT_DATA_DIR to the data folder")
    rng = np.random.default_rng(0)
    for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        W = W0.astype(dtype)
        x = rng.standard_normal(W.shape[1]).astype(dtype)
        for rank in (30, 50, 70):
            H = hmat.compress(W, rank=rank)
            for threads in (None, 1):
                with limit_threads(threads):
                    serial, parallel, dense = _ratios(W, x, H, rounds)
                print(f"{dtype.name} rank {rank} threads={threads or 'default'}: bytes ratio "
                      f"{H.nbytes / W.nbytes:.3f}; H/W serial {serial:.2f}, parallel "
                      f"{parallel:.2f}; dense {dense * 1e6:.1f} us", flush=True)


if __name__ == "__main__":
    main()
