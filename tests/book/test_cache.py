"""The cache-capacity page's code: cache sizes, the scaled structures, the paired excess and the
pre-registered criterion of C-cache-capacity (no timed assertions)."""

from __future__ import annotations

import numpy as np
import pytest

from hmatbook import cache


def test_parse_size_reads_sys_and_lscpu_forms():
    assert cache.parse_size("32768K") == 32 * 2**20
    assert cache.parse_size("1024K") == 2**20
    assert cache.parse_size("32 MiB") == 32 * 2**20
    assert cache.parse_size("512") == 512
    with pytest.raises(ValueError, match="cache size"):
        cache.parse_size("lots")


def test_cache_sizes_from_a_sys_folder(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                             (2, "Unified", "2048K"), (3, "Unified", "8192K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    c = cache.cache_sizes(tmp_path)
    assert c["L1"] == 48 * 2**10  # the data cache, not the instruction cache
    assert c["L2"] == 2 * 2**20 and c["L3"] == 8 * 2**20 and c["llc"] == 8 * 2**20


def test_cache_sizes_of_this_machine_are_positive():
    c = cache.cache_sizes()
    assert c["llc"] > 0 and c["llc"] == max(v for k, v in c.items() if k.startswith("L"))


@pytest.mark.parametrize("scale,shape", [(1, (1000, 1280)), (0.5, (500, 640)), (0.125, (125, 160))])
def test_classifier_like_keeps_the_structure_and_multiplies_right(scale, shape):
    H = cache.classifier_like(scale, rank=30)
    assert H.shape == shape and H.max_rank <= 30
    x = np.random.default_rng(1).standard_normal(shape[1])
    np.testing.assert_allclose(H @ x, H.to_dense() @ x, rtol=1e-10, atol=1e-10)
    assert cache.dense_like(H).shape == shape


def test_classifier_like_storage_falls_with_scale_at_fixed_rank():
    ratios = [cache.classifier_like(s).compression_ratio for s in (0.5, 1, 2)]
    assert ratios[0] > ratios[1] > ratios[2]
    with pytest.raises(ValueError, match="scale"):
        cache.classifier_like(0)


def test_as_dtype_and_smooth_kernel():
    H, W = cache.smooth_kernel(256, tol=1e-6, dtype="float32")
    assert H.dtype == np.float32 and W.dtype == np.float32 and W.shape == (256, 256)
    x = np.ones(256, dtype=np.float32)
    np.testing.assert_allclose(H @ x, W @ x, rtol=1e-4)
    assert cache.as_dtype(H, "float32") is H


def test_paired_excess_bookkeeping():
    H = cache.classifier_like(0.125)
    W = cache.dense_like(H)
    r = cache.paired_excess(H, W, rounds=6, min_time=1e-4, threads=1)
    assert r["rounds"] == 6 and r["threads"] == 1 and r["clock"] == "thread CPU"
    assert r["excess"] == pytest.approx(r["time_saving"] - r["bytes_saving"])
    assert r["excess_lo"] <= r["excess"] <= r["excess_hi"]
    assert r["bytes_saving"] == pytest.approx(1 - H.nbytes / W.nbytes)
    with pytest.raises(ValueError, match="shape and dtype"):
        cache.paired_excess(H, W.astype(np.float32), rounds=6)


def test_regime():
    assert cache.regime(10, 5, 8) == "only H fits"
    assert cache.regime(6, 5, 8) == "both fit"
    assert cache.regime(20, 10, 8) == "neither fits"


def _row(dense, h, lo, hi, dtype="float64"):
    return {"shape": "m x n", "dtype": dtype, "dense_bytes": dense, "h_bytes": h,
            "excess": (lo + hi) / 2, "excess_lo": lo, "excess_hi": hi}


@pytest.mark.parametrize("rows,expected", [
    # excess above 0 only where the dense matrix exceeds the cache and H fits
    ([_row(4, 2, -0.1, 0.05), _row(16, 6, 0.05, 0.2)], "reproduced"),
    # above 0 where both fit
    ([_row(4, 2, 0.01, 0.05), _row(16, 6, 0.05, 0.2)], "not reproduced"),
    # at or below 0 at every size of the first regime
    ([_row(4, 2, -0.1, 0.0), _row(16, 6, -0.2, -0.01)], "not reproduced"),
    # the first regime's interval straddles 0
    ([_row(4, 2, -0.1, 0.0), _row(16, 6, -0.1, 0.1)], "inconclusive"),
    # no size where only H fits (float32 rows do not count)
    ([_row(4, 2, -0.1, 0.0), _row(16, 6, 0.1, 0.2, "float32")], "not testable here"),
])
def test_verdict_follows_the_registered_criterion(rows, expected):
    v = cache.verdict(rows, llc=8)
    assert v.verdict == expected
    assert "last-level cache" in v.measured
