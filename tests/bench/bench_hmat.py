"""Part III's benchmarks under pytest-benchmark: ``nox -s bench`` (or
``HMAT_BENCH_PROFILE=quick pytest tests/bench/bench_hmat.py --benchmark-json=out.json``).

Products (H, numpy, torch F.linear, int8 quantize_dynamic) per matrix, rank, dtype and number of
vectors; H build against one full SVD; STREAM bandwidth and a GEMM roof; scaling with n and
threads; numba's compile cache across processes; small layers. The ratios are computed after the
run from the medians (``tests/bench/conftest.py`` -> ``hmatbook.bench_summary``).
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np
import pytest

import hmat
from hmat import available_threads, limit_threads
from hmatbook import bench

PROFILE = os.environ.get("HMAT_BENCH_PROFILE", "quick")
if PROFILE not in bench.BENCH_PROFILES:
    raise ValueError(f"HMAT_BENCH_PROFILE must be one of {sorted(bench.BENCH_PROFILES)}, "
                     f"got {PROFILE!r}")
CFG = bench.BENCH_PROFILES[PROFILE]


@functools.cache
def _matrix(name):
    return bench.get_matrix(name)


@functools.cache
def _hmatrix(name, rank, dtype):
    return hmat.compress(_matrix(name).astype(dtype), rank=rank)


def _matrix_or_skip(name):
    W = _matrix(name)
    if W is None:
        pytest.skip(f"{name}: weights unavailable (set HMAT_DATA_DIR to the data folder)")
    return W


def _pedantic(benchmark, fn, **info):
    benchmark.extra_info.update(info)
    iterations = bench.calls_for(fn, CFG["min_time"])
    benchmark.pedantic(fn, rounds=CFG["rounds"], iterations=iterations, warmup_rounds=1)
    if info.get("threads") == 1:  # one thread: also its CPU time, which other processes on a
        # shared machine do not inflate (wall times on 2 busy cores varied 10x between runs)
        benchmark.extra_info["cpu_median_s"] = _cpu_median(fn, iterations, CFG["rounds"])


def _cpu_median(fn, iterations: int, rounds: int) -> float:
    """Median over ``rounds`` of the calling thread's CPU seconds per call."""
    per = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(iterations):
            fn()
        per.append((time.thread_time() - t0) / iterations)
    return float(np.median(per))


# ------------------------------------------------------------------------------ products
def _product_cases():
    for th in CFG["threads"]:
        for mat in CFG["matrices"]:
            for dt in CFG["dtypes"]:
                for p in CFG["ps"]:
                    for impl in CFG["impls"]:
                        if impl == "hmat":
                            for r in CFG["ranks"]:
                                yield th, mat, dt, p, impl, r
                        elif not (impl == "torch_int8" and dt != "float32"):
                            yield th, mat, dt, p, impl, None


PRODUCT_CASES = list(_product_cases())


@pytest.mark.parametrize("threads,mat,dtype,p,impl,rank", PRODUCT_CASES,
                         ids=[f"t{t or 'all'}-{m}-{d}-p{p}-{i}" + (f"-r{r}" if r else "")
                              for t, m, d, p, i, r in PRODUCT_CASES])
def test_product(benchmark, threads, mat, dtype, p, impl, rank):
    W = _matrix_or_skip(mat)
    Hs = {rank: _hmatrix(mat, rank, dtype)} if impl == "hmat" else {}
    runners = bench.product_runners(W, Hs, p, dtype, impls=(impl,))
    (name, (fn, nbytes)), = runners.items()
    n_threads = threads or available_threads()
    benchmark.group = f"product {mat} {dtype} p={p} threads={n_threads}"
    entries = Hs[rank].n_entries if Hs else W.size
    with limit_threads(threads):  # numba, BLAS and torch
        _pedantic(benchmark, fn, kind="product", matrix=mat, dtype=dtype, p=p, impl=impl,
                  rank=rank, threads=n_threads, nbytes=int(nbytes), flops=2.0 * entries * p,
                  shape=list(W.shape))


# ------------------------------------------------------------------------------ the goals
GOAL_KERNEL = {"n": 1024, "tol": 1e-6, "dtype": "float32"}  # 1/(1+|i-j|), issue 11


@functools.cache
def _goal_kernel():
    W = bench.kernel_matrix(GOAL_KERNEL["n"], dtype=GOAL_KERNEL["dtype"])
    return W, hmat.compress(W, tol=GOAL_KERNEL["tol"])


GOAL_KERNEL_CASES = [(t, i) for t in CFG["threads"] for i in ("hmat", "numpy")]


@pytest.mark.parametrize("threads,impl", GOAL_KERNEL_CASES,
                         ids=[f"t{t or 'all'}-{i}" for t, i in GOAL_KERNEL_CASES])
def test_goal_kernel(benchmark, threads, impl):
    """One vector with the smooth kernel at tol 1e-6, float32 (goal: within 1.5 x its bytes)."""
    W, H = _goal_kernel()
    x = np.random.default_rng(0).standard_normal(W.shape[1]).astype(W.dtype)
    fn = (lambda: H @ x) if impl == "hmat" else (lambda: W @ x)
    n_threads = threads or available_threads()
    benchmark.group = f"goal kernel threads={n_threads}"
    with limit_threads(threads):
        _pedantic(benchmark, fn, kind="goal_kernel", impl=impl, threads=n_threads,
                  nbytes=int(H.nbytes if impl == "hmat" else W.nbytes), **GOAL_KERNEL,
                  **_row_facts(H))


def _row_facts(H) -> dict:
    """What one vector's product computes: dot products over stored rows (the Vt rows of the
    low-rank blocks, then one panel row per matrix row), their mean length and the blocks."""
    rows = int(H._pn.t_off[-1]) + H.shape[0]
    return {"rows": rows, "mean_row_entries": (H._pn.panel.size + H._pn.vt.size) / rows,
            "n_lowrank": int(H.lr_desc.shape[0]), "n_blocks": int(H.n_blocks)}


@pytest.mark.parametrize("impl", ["hmat", "numpy"])
def test_call_overhead(benchmark, impl):
    """Fixed cost of one call on a tiny matrix (16 x 16, 16 dense 4 x 4 leaves), float32."""
    W = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    H = hmat.compress(W, rank=2, leaf_size=4)
    x = np.ones(16, dtype=np.float32)
    fn = (lambda: H @ x) if impl == "hmat" else (lambda: W @ x)
    benchmark.group = "call overhead"
    with limit_threads(1):
        _pedantic(benchmark, fn, kind="overhead", impl=impl, n_blocks=H.n_blocks, threads=1)


PHASE_CASES = [(d, p, ph) for d in CFG["dtypes"] for p in (1, 256)
               for ph in ("full", "vt", "panels", "dense")]


@pytest.mark.parametrize("dtype,p,phase", PHASE_CASES,
                         ids=[f"{d}-p{p}-{ph}" for d, p, ph in PHASE_CASES])
def test_phase(benchmark, dtype, p, phase):
    """A profile of one product (classifier, rank 30, one thread; one vector on the micro-kernels,
    256 on the BLAS GEMMs): the whole kernel, only its Vt x phase (no panel rows gathered), only
    its panels (no Vt x), and numpy's W @ x. Shows which part falls short of numpy's rate."""
    from hmat import _kernels
    from hmat.hmatrix import _gemm_max_mnk

    W = _matrix_or_skip("mobilenet_v2").astype(dtype)
    H = _hmatrix("mobilenet_v2", 30, dtype)
    (panel, vt, _), zero = H._kernel_args(np.dtype(dtype))
    tables = {**H._pn._asdict(), **H._schedule._asdict(), "lr_desc": H.lr_desc}
    if phase == "vt":  # no runs and no panels: every chunk has width 0 (kernels._width)
        tables.update(pan_off=np.zeros_like(H._pn.pan_off), run_ptr=np.zeros_like(H._pn.run_ptr))
    elif phase == "panels":  # no Vt blocks in any task, none shared
        tables.update(task_ptr=np.zeros_like(H._schedule.task_ptr),
                      shared=H._schedule.shared[:0])
    plan, _ = _kernels.pack_plan(tables, H._plan[0])
    static = (panel, vt, plan)
    rng = np.random.default_rng(0)
    entries = {"full": panel.size + vt.size, "vt": vt.size, "panels": panel.size,
               "dense": W.size}[phase]
    if p == 1:
        XT = rng.standard_normal((1, W.shape[1])).astype(dtype)
        YT = np.empty((1, W.shape[0]), dtype=dtype)
        x = XT[0].copy()
        fn = ((lambda: W @ x) if phase == "dense" else
              (lambda: _kernels.product(*static, XT, YT, zero, False)))
    else:
        X = rng.standard_normal((W.shape[1], p)).astype(dtype)
        Y = np.empty((W.shape[0], p), dtype=dtype)
        mm = _gemm_max_mnk()
        fn = ((lambda: W @ X) if phase == "dense" else
              (lambda: _kernels.product_gemm(*static, X, Y, False, mm)))
    benchmark.group = f"phase {dtype} p={p}"
    with limit_threads(1):
        _pedantic(benchmark, fn, kind="phase", phase=phase, dtype=dtype, p=p,
                  nbytes=int(entries * np.dtype(dtype).itemsize), flops=2.0 * entries * p,
                  threads=1)


PATH_CASES = [(d, p, path, r) for d in CFG["dtypes"] for p in CFG["ps"]
              for path, ranks in (("numpy", [None]), ("serial", CFG["ranks"]),
                                  ("parallel", CFG["ranks"])) for r in ranks]


@pytest.mark.parametrize("dtype,p,path,rank", PATH_CASES,
                         ids=[f"{d}-p{p}-{ph}" + (f"-r{r}" if r else "")
                              for d, p, ph, r in PATH_CASES])
def test_thread_paths(benchmark, dtype, p, path, rank):
    """A profile of the default threads (classifier, each rank): the product's serial path and its
    parallel path, each timed ALONE (after a pause that lets every spinning thread sleep, and
    with no numpy call in between), beside numpy's W @ x. The product goals alternate H and
    numpy; the difference between the two shows what numpy's threads cost hmat's."""
    from hmat import _kernels
    from hmat._threads import one_blas_thread
    from hmat.hmatrix import _gemm_max_mnk

    if available_threads() < 2:
        pytest.skip("one core: no parallel path to profile")
    W = _matrix_or_skip("mobilenet_v2").astype(dtype)
    H = _hmatrix("mobilenet_v2", rank or CFG["ranks"][0], dtype)  # numpy: H only for shapes
    static, zero = H._kernel_args(np.dtype(dtype))
    rng = np.random.default_rng(0)
    parallel = path == "parallel"
    if p < _kernels.GEMM_MIN_VECTORS:
        XT = rng.standard_normal((p, W.shape[1])).astype(dtype)
        YT = np.empty((p, W.shape[0]), dtype=dtype)
        x = XT.T.copy() if p > 1 else XT[0].copy()
        dense = lambda: W @ x  # noqa: E731
        run = lambda: _kernels.product(*static, XT, YT, zero, parallel)  # noqa: E731
    else:
        X = rng.standard_normal((W.shape[1], p)).astype(dtype)
        Y = np.empty((W.shape[0], p), dtype=dtype)
        mm = _gemm_max_mnk()
        dense = lambda: W @ X  # noqa: E731

        def run():
            if parallel:
                with one_blas_thread():
                    _kernels.product_gemm(*static, X, Y, True, mm)
            else:
                _kernels.product_gemm(*static, X, Y, False, mm)
    chosen = (None if path == "numpy" else  # the path H @ x takes at these threads
              "parallel" if H._work * p >= _kernels.PARALLEL_MIN_WORK else "serial")
    benchmark.group = f"thread paths {dtype} p={p}"
    time.sleep(0.3)  # earlier benchmarks' spinning BLAS threads go to sleep
    _pedantic(benchmark, dense if path == "numpy" else run, kind="thread_path", dtype=dtype,
              p=p, path=path, matrix="mobilenet_v2", rank=rank, chosen=chosen,
              threads=available_threads())


# ------------------------------------------------------------------------------ build
@pytest.mark.parametrize("mat", CFG["matrices"])
def test_svd(benchmark, mat):
    W = _matrix_or_skip(mat)
    benchmark.group = f"build {mat}"
    benchmark.extra_info.update(kind="svd", matrix=mat)
    benchmark.pedantic(lambda: np.linalg.svd(W, full_matrices=False), rounds=3, iterations=1,
                       warmup_rounds=1)


BUILD_CASES = [(m, {"rank": r}) for m in CFG["matrices"] for r in CFG["build_ranks"]]
BUILD_CASES += [(m, {"tol": CFG["build_tol"]}) for m in CFG["matrices"]]


@pytest.mark.parametrize("mat,setting", BUILD_CASES,
                         ids=[f"{m}-{k}{v}" for m, s in BUILD_CASES for k, v in s.items()])
def test_build(benchmark, mat, setting):
    W = _matrix_or_skip(mat)
    benchmark.group = f"build {mat}"
    H = hmat.compress(W, **setting)
    benchmark.extra_info.update(kind="build", matrix=mat, **setting,
                                storage=H.compression_ratio, max_rank=H.max_rank)
    benchmark.pedantic(lambda: hmat.compress(W, **setting), rounds=3, iterations=1,
                       warmup_rounds=1)


# ------------------------------------------------------------------------------ roofline
STREAM_CASES = [(op, nb, th) for op in ("read", "copy", "triad") for nb in CFG["stream_bytes"]
                for th in CFG["threads"]]


@pytest.mark.parametrize("op,nbytes,threads", STREAM_CASES,
                         ids=[f"{o}-{nb >> 20}MiB-t{t or 'all'}" for o, nb, t in STREAM_CASES])
def test_stream(benchmark, op, nbytes, threads):
    from hmatbook import _stream

    n = nbytes // 8
    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    serial = threads == 1
    if op == "read":
        k = _stream.read_serial if serial else _stream.read
        fn, moved = (lambda: k(b)), 8 * n
    elif op == "copy":
        k = _stream.copy_serial if serial else _stream.copy
        fn, moved = (lambda: k(a, b)), 16 * n
    else:
        k = _stream.triad_serial if serial else _stream.triad
        fn, moved = (lambda: k(a, b, c, 3.0)), 24 * n
    benchmark.group = "stream"
    with limit_threads(None if serial else threads):
        _pedantic(benchmark, fn, kind="stream", op=op, array_bytes=8 * n, bytes=moved,
                  threads=threads or available_threads())


@pytest.mark.parametrize("dtype", CFG["dtypes"])
def test_gemm_peak(benchmark, dtype):
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    benchmark.group = "gemm"
    _pedantic(benchmark, lambda: a @ b, kind="gemm", dtype=dtype, n=n, flops=2.0 * n**3)


# ------------------------------------------------------------------------------ scaling
@functools.cache
def _kernel_h(n):
    return hmat.compress(bench.index_kernel_entries("inverse"), shape=(n, n), tol=1e-6,
                         method="aca")


SCALING_CASES = [(n, th, impl) for n in CFG["scaling_ns"] for th in CFG["threads"]
                 for impl in ("hmat", "numpy") if impl == "hmat" or n <= CFG["dense_max_n"]]


@pytest.mark.parametrize("n,threads,impl", SCALING_CASES,
                         ids=[f"n{n}-t{t or 'all'}-{i}" for n, t, i in SCALING_CASES])
def test_scaling(benchmark, n, threads, impl):
    H = _kernel_h(n)
    x = np.random.default_rng(n).standard_normal(n)
    if impl == "hmat":
        fn = lambda: H @ x  # noqa: E731
    else:
        W = bench.kernel_matrix(n)
        fn = lambda: W @ x  # noqa: E731
    benchmark.group = f"scaling threads={threads or 'all'}"
    with limit_threads(threads):
        _pedantic(benchmark, fn, kind="scaling", n=n, impl=impl,
                  threads=threads or available_threads(), hmat_nbytes=H.nbytes,
                  dense_nbytes=8 * n * n, nbytes=H.nbytes if impl == "hmat" else 8 * n * n)


# ------------------------------------------------------------------------------ small layers
SMALL_CASES = [(n, impl) for n in CFG["small_ns"] for impl in ("hmat", "numpy")]


@pytest.mark.parametrize("n,impl", SMALL_CASES, ids=[f"n{n}-{i}" for n, i in SMALL_CASES])
def test_small_layer(benchmark, n, impl):
    W = bench.kernel_matrix(n, kind="exp", dtype=np.float32)
    H = hmat.compress(W, tol=1e-3, adaptive=True)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    fn = (lambda: H @ x) if impl == "hmat" else (lambda: W @ x)
    benchmark.group = "small layers"
    _pedantic(benchmark, fn, kind="small", n=n, impl=impl, storage=H.compression_ratio)


# ------------------------------------------------------------------------------ compile cache
@pytest.mark.skipif(not CFG["compile_cache"], reason="compile-cache check is in the full profile")
def test_compile_cache(benchmark):
    benchmark.group = "numba"
    res = benchmark.pedantic(bench.compile_and_cache, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="compile", **res)
    assert res["cache_works"], res


def test_machine(benchmark):
    """Not a timing: records the machine (CPU, caches, BLAS, threads) in the JSON."""
    benchmark.group = "machine"
    benchmark.extra_info.update(kind="machine", machine=bench.machine_info())
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
