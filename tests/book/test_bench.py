"""hmatbook.bench and bench_summary: the measurement helpers of Part III (fast, tiny
sizes; no timing is asserted, only that the records are complete and consistent)."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmatbook import bench, bench_summary


def test_time_interleaved_returns_positive_medians():
    calls = {"a": 0, "b": 0}

    def fa():
        calls["a"] += 1

    def fb():
        calls["b"] += 1
        sum(range(50))

    t = bench.time_interleaved({"a": fa, "b": fb}, min_time=0.002, rounds=3)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    assert calls["a"] > 3 and calls["b"] > 3
    assert bench.time_call(fa, min_time=0.001, repeats=2) > 0


def test_kernel_matrix_and_entries_agree():
    A = bench.kernel_matrix(7, 5)
    np.testing.assert_allclose(A, 1.0 / (1.0 + np.abs(np.subtract.outer(np.arange(7),
                                                                        np.arange(5)))))
    f = bench.index_kernel_entries("exp")
    np.testing.assert_allclose(bench.kernel_matrix(4, kind="exp"), f(np.arange(4), np.arange(4)))
    with pytest.raises(ValueError, match="kind"):
        bench.index_kernel_entries("nope")
    with pytest.raises(ValueError, match="unknown matrix"):
        bench.get_matrix("nope")
    assert bench.get_matrix("kernel_16").shape == (16, 16)


def test_compare_products_records():
    W = bench.kernel_matrix(96, 80)
    Hs = {4: hmat.compress(W, rank=4, leaf_size=16)}
    rows = bench.compare_products(W, Hs, matrix="k", dtypes=("float32",), ps=(1, 3),
                                  impls=("numpy", "hmat"), min_time=0.001, rounds=2)
    assert len(rows) == 4
    for r in rows:
        assert r["seconds"] > 0 and r["gbytes_per_s"] > 0 and r["gflops"] > 0
        assert r["dtype"] == "float32"
    np_rows = [r for r in rows if r["impl"] == "numpy"]
    assert all(r["ratio"] == pytest.approx(1.0) for r in np_rows)
    h = [r for r in rows if r["impl"] == "hmat"][0]
    assert h["label"] == "4"
    # the float64 H cast to float32: factors at half the bytes, the same index tables
    assert Hs[4].nbytes / 2 < h["nbytes"] < Hs[4].nbytes


def test_product_runners_compute_the_product():
    W = bench.kernel_matrix(40, 30)
    H = hmat.compress(W, rank=3, leaf_size=8)
    runners = bench.product_runners(W, {"3": H}, 2, "float64", impls=("numpy", "hmat"))
    y_np, y_h = runners["numpy"][0](), runners["hmat[3]"][0]()
    np.testing.assert_allclose(y_h, H.to_dense() @ np.linalg.lstsq(W, y_np, rcond=None)[0],
                               atol=1e-8)


def test_torch_runners():
    pytest.importorskip("torch")
    W = bench.kernel_matrix(40, 30).astype(np.float32)
    runners = bench.product_runners(W, {}, 4, "float32", impls=("numpy", "torch", "torch_int8"))
    y_np = runners["numpy"][0]()
    np.testing.assert_allclose(runners["torch"][0]().numpy().T, y_np, rtol=1e-4, atol=1e-4)
    y_q = runners["torch_int8"][0]().numpy().T  # int8: about 1 % of the largest entry
    assert np.abs(y_q - y_np).max() < 0.05 * np.abs(y_np).max()
    assert runners["torch_int8"][1] < runners["numpy"][1] / 3


def test_build_times_and_weight_storage():
    W = bench.kernel_matrix(64, 48)
    rows = bench.build_times(W, ranks=(2,), tol=1e-3, repeats=1)
    assert [("rank" in r, "tol" in r) for r in rows] == [(True, False), (False, True)]
    assert all(r["build_s"] > 0 and r["svd_s"] > 0 for r in rows)
    ws = bench.weight_storage(W, [16, 32, 64], tol=1e-2)
    assert [r["rows"] for r in ws] == [16, 32, 64] and ws[-1]["cols"] == 48


def test_stream_and_gemm_peak():
    s = bench.stream(1 << 16, repeats=1)
    assert min(s["read_gbs"], s["copy_gbs"], s["triad_gbs"]) > 0 and s["array_bytes"] == 1 << 16
    s1 = bench.stream(1 << 16, threads=1, repeats=1)
    assert s1["threads"] == 1
    assert bench.gemm_peak(64, repeats=1)["gflops"] > 0


def test_scaling_and_small_layers():
    rows = bench.scaling([64, 128], threads=(1,), dense_max_n=64, min_time=0.001, rounds=2)
    assert [r["n"] for r in rows] == [64, 128]
    assert rows[0]["numpy_s"] is not None and rows[1]["numpy_s"] is None
    small = bench.small_layers([16, 64], min_time=0.001, rounds=2)
    assert [r["n"] for r in small] == [16, 64] and all(r["ratio"] > 0 for r in small)


def test_verdicts():
    v, text = bench.verdict_nlogn(1.1, 1.9, weight_tol=1e-2)
    assert v == "reproduced" and "1.10" in text and "1.90" in text
    assert bench.verdict_nlogn(1.5)[0] == "not reproduced"
    rows = [{"n": 16, "ratio": 3.0, "hmat_s": 3e-6, "numpy_s": 1e-6, "build_s": 1e-3},
            {"n": 1024, "ratio": 0.5, "hmat_s": 5e-6, "numpy_s": 1e-5, "build_s": 1e-2}]
    v, text = bench.verdict_overhead(rows)
    assert v == "reproduced" and "faster from n=1024" in text
    rows[0]["ratio"] = 0.9
    assert bench.verdict_overhead(rows)[0] == "not reproduced"
    rows[0]["ratio"], rows[1]["ratio"] = 3.0, 1.2  # slower everywhere: no benefit to offset
    v, text = bench.verdict_overhead(rows)
    assert v == "not reproduced" and "slower at every size" in text


def test_summarize_pytest_benchmark_json():
    def b(median, **info):
        return {"stats": {"median": median}, "extra_info": info}

    benches = [
        b(2.0, kind="product", matrix="m", dtype="float32", p=1, impl="numpy", rank=None,
          nbytes=100),
        b(1.0, kind="product", matrix="m", dtype="float32", p=1, impl="hmat", rank=30,
          nbytes=40),
        b(0.5, kind="stream", op="triad", bytes=1e9, array_bytes=1, threads=2),
        b(0.1, kind="gemm", dtype="float32", n=2, flops=1e9),
        b(1.0, kind="svd", matrix="m"), b(0.5, kind="build", matrix="m", rank=30),
        b(1e-3, kind="scaling", n=100, impl="hmat", hmat_nbytes=1000, threads=1),
        b(1e-3, kind="scaling", n=1000, impl="hmat", hmat_nbytes=10000, threads=1),
    ]
    s = bench_summary.summarize(benches)
    h = [r for r in s["products"] if r["impl"] == "hmat"][0]
    assert h["ratio"] == pytest.approx(0.5) and h["bytes_ratio"] == pytest.approx(0.4)
    assert s["goals_rank30"][0]["goal"] == pytest.approx(0.5) and s["goals_rank30"][0]["met"]
    assert s["stream"][0]["gbytes_per_s"] == pytest.approx(2.0)
    assert s["gemm"][0]["gflops"] == pytest.approx(10.0)
    assert s["build"][0]["ratio_to_svd"] == pytest.approx(0.5)
    assert s["storage_slope"] == pytest.approx(1.0)


def test_summarize_issue11_goals_use_cpu_time_on_one_thread():
    def b(median, **info):
        return {"stats": {"median": median}, "extra_info": info}

    common = dict(kind="product", matrix=bench_summary.GOAL_MATRIX, dtype="float32", threads=1)
    benches = [
        b(2.0, p=1, impl="numpy", rank=None, nbytes=100, flops=200.0, cpu_median_s=1.0, **common),
        b(1.0, p=1, impl="hmat", rank=30, nbytes=50, flops=100.0, cpu_median_s=0.6, **common),
        b(4.0, p=8, impl="numpy", rank=None, nbytes=100, flops=1600.0, **common),
        b(2.4, p=8, impl="hmat", rank=30, nbytes=50, flops=800.0, **common),
        b(1.0, kind="goal_kernel", impl="numpy", threads=1, nbytes=1000, n=8, tol=1e-6,
          dtype="float32", cpu_median_s=1.0),
        b(0.5, kind="goal_kernel", impl="hmat", threads=1, nbytes=200, n=8, tol=1e-6,
          dtype="float32", cpu_median_s=0.25),
        b(1e-6, kind="overhead", impl="numpy", threads=1, cpu_median_s=1e-6),
        b(5e-6, kind="overhead", impl="hmat", threads=1, cpu_median_s=3e-6),
        b(1e-4, kind="phase", phase="vt", dtype="float32", nbytes=1e5, threads=1,
          cpu_median_s=5e-5),
    ]
    other = dict(common, matrix="another")  # not the classifier: no goal
    benches += [b(1.0, p=1, impl="numpy", rank=None, nbytes=100, flops=200.0, **other),
                b(9.0, p=1, impl="hmat", rank=30, nbytes=50, flops=100.0, **other)]
    s = bench_summary.summarize(benches, changes=[{"change": "x"}])
    assert all(x.get("matrix") != "another" for x in s["goals"])
    g = {(x.get("p"), x["goal"].split(":")[0]): x for x in s["goals"]}
    one = g[(1, "1 vector(s)")]  # CPU ratio 0.6 against 1.1 x 0.5
    assert one["clock"] == "cpu" and one["ratio"] == pytest.approx(0.6)
    assert one["target"] == pytest.approx(0.55) and not one["met"]
    eight = g[(8, "8 vector(s)")]  # wall ratio 0.6 against 1.25 x the flop ratio 0.5
    assert eight["clock"] == "wall" and eight["target"] == pytest.approx(0.625) and eight["met"]
    kern = g[(1, "smooth kernel")]  # 0.25 against 1.5 x 0.2
    assert kern["ratio"] == pytest.approx(0.25) and kern["met"]
    over = g[(None, "call overhead")]
    assert over["extra_us"] == pytest.approx(2.0) and over["met"]
    assert s["phases"][0]["gbytes_per_cpu_s"] == pytest.approx(1e5 / 5e-5 / 1e9)
    assert s["changes"] == [{"change": "x"}]


def test_summarize_attaches_limits_to_goals_not_met():
    """Each goal not met carries the profile of the same run that explains it; met goals none."""
    def b(median, **info):
        return {"stats": {"median": median}, "extra_info": info}

    m = bench_summary.GOAL_MATRIX
    one = dict(kind="product", matrix=m, dtype="float32", threads=1)
    two = dict(kind="product", matrix=m, dtype="float32", threads=2)
    path = dict(kind="thread_path", dtype="float32", p=1, matrix=m, chosen="serial", threads=2)
    benches = [
        # one thread, one vector: 0.8 against 1.1 x 0.5 (not met); H 50 B in 0.8 s, numpy 100 in 1
        b(1.0, p=1, impl="numpy", rank=None, nbytes=100, flops=200.0, cpu_median_s=1.0, **one),
        b(0.8, p=1, impl="hmat", rank=30, nbytes=50, flops=100.0, cpu_median_s=0.8, **one),
        # one thread, 8 vectors: met, so no profile
        b(4.0, p=8, impl="numpy", rank=None, nbytes=100, flops=1600.0, **one),
        b(2.0, p=8, impl="hmat", rank=30, nbytes=50, flops=800.0, **one),
        # two threads, one vector: 1.5 alternating, not met
        b(1.0, p=1, impl="numpy", rank=None, nbytes=100, flops=200.0, **two),
        b(1.5, p=1, impl="hmat", rank=30, nbytes=50, flops=100.0, **two),
        b(0.5, path="numpy", rank=None, **path), b(0.3, path="serial", rank=30, **path),
        b(0.4, path="parallel", rank=30, **path),
        b(2.0, p=1, impl="hmat", rank=50, nbytes=60, flops=120.0, **two),  # not met either
        b(0.45, path="serial", rank=50, **path), b(0.35, path="parallel", rank=50, **path),
        b(0.4, kind="phase", phase="vt", dtype="float32", p=1, nbytes=1e5, flops=1.0,
          threads=1, cpu_median_s=0.5),
        b(1.0, kind="goal_kernel", impl="numpy", threads=1, nbytes=1000, n=8, tol=1e-6,
          dtype="float32", cpu_median_s=1.0),
        b(0.5, kind="goal_kernel", impl="hmat", threads=1, nbytes=200, n=8, tol=1e-6,
          dtype="float32", cpu_median_s=0.5, rows=10, mean_row_entries=5.0, n_lowrank=3,
          n_blocks=7),
    ]
    s = bench_summary.summarize(benches)
    g = {(x["goal"].split(":")[0], x.get("threads")): x for x in s["goals"]}
    lim = g["1 vector(s)", 1]["limited_by"]
    assert lim["h_gbytes_per_s"] == pytest.approx(50 / 0.8 / 1e9)
    assert lim["dense_gbytes_per_s"] == pytest.approx(100 / 1e9)
    assert lim["phases_rank30"] == {"vt": pytest.approx(1e5 / 0.5 / 1e9)}
    assert "limited_by" not in g["8 vector(s)", 1]
    thr = [x for x in s["goals"] if x.get("rank") == 30 and x["threads"] == 2][0]["limited_by"]
    # alone: serial 0.3 s against numpy 0.5 s
    assert thr["alone_ratio_best_path"] == pytest.approx(0.6)  # target 1.1 x 0.5
    assert not thr["alone_meets_target"] and thr["chosen_path"] == "serial"
    assert thr["parallel_speedup"] == pytest.approx(0.75)
    assert thr["numpy_speedup"] == pytest.approx(2.0)  # 1.0 s on one thread, 0.5 alone on two
    r50 = [x for x in s["goals"] if x.get("rank") == 50 and x["threads"] == 2][0]["limited_by"]
    assert r50["alone_us"] == pytest.approx({"numpy": 5e5, "serial": 4.5e5, "parallel": 3.5e5})
    assert r50["alone_ratio_best_path"] == pytest.approx(0.7)  # numpy's row serves every rank
    kern = g["smooth kernel", 1]["limited_by"]  # 0.5 against 1.5 x 0.2
    assert kern["ns_per_row"] == pytest.approx(0.5e8) and kern["mean_row_entries"] == 5.0
    assert s["thread_paths"][0]["path"] == "numpy"
