"""The verdict functions read their criteria from data/claims.yml: for each, changing a
threshold (or the ranks a comparison is made at) in the data changes the verdict on the same
measurements, so the file, not a number in the code, decides."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hmatbook import bench, cache, ledger
from hmatbook import part2_claims as V
from hmatbook import thesis as th

R, N, INC = "reproduced", "not reproduced", "inconclusive"


@pytest.fixture
def edit(monkeypatch):
    """``edit(claim_id, name, **fields)`` changes one test quantity of the claims for this test
    only (``ledger.load_claims`` is patched; the file is not touched)."""
    claims = copy.deepcopy(ledger.load_claims())
    monkeypatch.setattr(ledger, "load_claims", lambda path=None: claims)

    def change(claim_id, name, **fields):
        t = ledger.claim(claim_id, claims)["test"][name]
        missing = set(fields) - set(t)
        assert not missing, f"{claim_id}.{name} has no {missing} to change"
        t.update(copy.deepcopy(fields))

    return change


# ------------------------------------------------------------------ Part I (thesis)

def test_tradeoff_reads_both_drops(edit):
    rows = {"m": {30: (50, 8), 50: (30, 4), 70: (10, 2)}}
    assert th.verdict_tradeoff(rows)[0] == R
    edit("T-disc-tradeoff", "time_saving_drop", threshold=25.0)  # steps of 20 points
    assert th.verdict_tradeoff(rows)[0] == N
    edit("T-disc-tradeoff", "time_saving_drop", threshold=0.0)
    edit("T-disc-tradeoff", "loss_drop", threshold=3.0)  # 8 -> 4 holds, 4 -> 2 fails
    assert th.verdict_tradeoff(rows)[0] == N


def test_fig2_close_reads_thresholds_and_ranks(edit):
    ranks = [5, 10, 20, 30, 50]
    t = {"svd": [1, 1, 1, 1, 1], "rrqr": [1.01, 1, 1, 1.2, 1.3], "aca": [1, 1, 1, 1.5, 1.6]}
    cid = "T-fig2-close-below-20"
    assert th.verdict_fig2_close(ranks, t)[0] == R
    edit(cid, "spread_low_ranks", threshold=0.001)  # low-rank mean spread is 0.0033
    assert th.verdict_fig2_close(ranks, t)[0] == N
    edit(cid, "spread_low_ranks", threshold=0.1)
    edit(cid, "spread_high_ranks", threshold=0.6)  # high-rank mean spread is 0.55
    assert th.verdict_fig2_close(ranks, t)[0] == N
    edit(cid, "spread_high_ranks", threshold=0.1)
    assert th.verdict_fig2_close(ranks, t)[0] == R
    # move the split from 20 to 30: rank 30 (spread 0.5) now counts as a low rank
    edit(cid, "spread_low_ranks", ranks={"comparison": "<=", "threshold": 30})
    edit(cid, "spread_high_ranks", ranks={"comparison": ">", "threshold": 30})
    v = th.verdict_fig2_close(ranks, t)
    assert v[0] == N and "ranks <= 30" in v[1]


def test_fig3_storage_reads_threshold_and_ranks(edit):
    ranks = [10, 50, 70, 100]
    ratio = {"svd": np.array([0.1, 0.5, 0.7, 0.9]), "rrqr": np.array([0.1, 0.5, 1.0, 1.0])}
    cid = "T-fig3-storage-smaller"
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == N  # QR stores as much as dense at 70
    edit(cid, "storage_ratio", ranks={"comparison": "<=", "threshold": 50})
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == R
    edit(cid, "storage_ratio", threshold=0.4)
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == N


def test_fig3_aca_least_reads_thresholds_and_ranks(edit):
    ranks = [10, 50, 70, 100]
    nb = {"svd": [10, 50, 70, 90], "rrqr": [10, 50, 70, 90], "aca": [10, 50, 97, 99]}
    tol = {"tol": [0.1, 0.01], "svd": [10, 40], "aca": [15, 60]}  # ACA / SVD 1.5 and 1.5
    cid = "T-fig3-aca-least"
    assert th.verdict_fig3_aca_least(ranks, nb, 100, tol)[0] == R
    edit(cid, "aca_over_svd", threshold=1.6)
    assert th.verdict_fig3_aca_least(ranks, nb, 100, tol)[0] == N
    edit(cid, "aca_over_svd", threshold=1.01)
    edit(cid, "aca_over_dense_r70", threshold=0.98)  # 97 % at rank 70
    assert th.verdict_fig3_aca_least(ranks, nb, 100, tol)[0] == N
    edit(cid, "aca_over_dense_r70", ranks={"comparison": ">=", "threshold": 100})
    assert th.verdict_fig3_aca_least(ranks, nb, 100, tol)[0] == R


def test_qr_close_reads_band_and_ranks(edit):
    gaps = {30: (1.0, 0.5, 1.5), 50: (1.0, 0.2, 1.8), 70: (2.0, 1.5, 2.5)}
    acc = ([70, 71, 72], [69, 70, 70])
    cid = "T-concl-qr-close-to-svd"
    assert th.verdict_qr_close([30, 50, 70], *acc, gaps=gaps)[0] == R
    edit(cid, "accuracy_gap", threshold=[0.0, 2.0])  # rank 70's interval straddles 2
    assert th.verdict_qr_close([30, 50, 70], *acc, gaps=gaps)[0] == INC
    edit(cid, "accuracy_gap", ranks={"comparison": "one of", "threshold": [30, 50]})
    assert th.verdict_qr_close([30, 50, 70], *acc, gaps=gaps)[0] == R


def test_aca_weak_reads_threshold_and_ranks(edit):
    gaps = {30: (60, 59, 61), 50: (51, 50, 52), 70: (42, 41, 43), 80: (1, 0, 2)}
    ranks, svd, aca = [30, 50, 70, 80], [70, 71, 72, 73], [10, 20, 30, 72]
    cid = "T-concl-aca-weak"
    assert th.verdict_aca_weak(ranks, svd, aca, gaps=gaps)[0] == R  # rank 80 not counted
    edit(cid, "accuracy_gap", threshold=45.0)
    assert th.verdict_aca_weak(ranks, svd, aca, gaps=gaps)[0] == N
    edit(cid, "accuracy_gap", threshold=3.0, ranks={"comparison": "in", "threshold": [30, 80]})
    assert th.verdict_aca_weak(ranks, svd, aca, gaps=gaps)[0] == N


# ------------------------------------------------------------------ Part II (2409.07028)

def test_exp2_threshold_reads_both_slacks(edit):
    rising = ([0.1, 0.3], [0.9, 0.95], [0.1, 0.3])  # storage rises by 5.6 %
    assert V.exp2_threshold(*rising)[0] == N
    edit("P-exp2-threshold", "storage_rise", threshold=0.1)
    assert V.exp2_threshold(*rising)[0] == R
    falling = ([0.1, 0.3], [0.9, 0.5], [0.3, 0.29])  # global error falls by 3.3 %
    assert V.exp2_threshold(*falling)[0] == N
    edit("P-exp2-threshold", "error_drop", threshold=0.05)
    assert V.exp2_threshold(*falling)[0] == R


def test_mech1_reads_bound_factor_and_storage(edit):
    rows = [dict(error=0.09, bound=0.1, storage=0.5)]
    assert V.mech1_adaptive_bound(rows)[0] == R
    edit("P-mech1-adaptive-bound", "error_over_bound", threshold=0.8)
    assert V.mech1_adaptive_bound(rows)[0] == N
    edit("P-mech1-adaptive-bound", "error_over_bound", threshold=1.0)
    edit("P-mech1-adaptive-bound", "storage", threshold=0.4)
    assert V.mech1_adaptive_bound(rows)[0] == N


def _rows(per_method, fraction=0.5):
    return [dict(method=m, fraction=fraction, memory_fraction=fraction, test_error=e,
                 reachable=True) for m, e in per_method.items()]


def test_outperforms_reads_the_tie(edit):
    rows = {"P": _rows(dict(hmatrix=0.0197, svd=0.02, prune=0.03, quant=0.04))}
    assert V.key_outperforms(rows)[0] == INC  # 1.5 % below SVD: a tie within 2 %
    edit("P-key-outperforms", "error_tie", threshold=0.01)
    assert V.key_outperforms(rows)[0] == R


def test_key_ntk_reads_bound_and_tie(edit):
    rows = [dict(method="hmatrix", fraction=0.5, ntk_change_K=0.0101),
            dict(method="quant", fraction=0.5, ntk_change_K=0.01)]
    assert V.key_ntk(rows)[0] == R  # 1 % above quantization: a tie counts as smallest
    edit("P-key-ntk", "ntk_tie", threshold=0.005)
    assert V.key_ntk(rows)[0] == N
    edit("P-key-ntk", "ntk_tie", threshold=0.02)
    edit("P-key-ntk", "ntk_change", threshold=0.01)
    assert V.key_ntk(rows)[0] == N


def test_navier_stokes_reads_the_tie(edit):
    rows = [dict(method="dense", fraction=1.0, test_error=0.01, reachable=True),
            *_rows(dict(hmatrix=0.015, svd=0.02, prune=0.03, quant=0.0149))]
    assert V.check_navier_stokes(0.01, rows)[0] == R  # 0.7 % above quantization: a tie
    edit("P-check-navier-stokes", "error_tie", threshold=0.001)
    assert V.check_navier_stokes(0.01, rows)[0] == N


# ------------------------------------------------------------------ Part III and our own claims

def test_nlogn_reads_the_slope(edit):
    assert bench.verdict_nlogn(1.25)[0] == R
    edit("T-intro-nlogn", "storage_slope", threshold=1.2)
    v = bench.verdict_nlogn(1.25)
    assert v[0] == N and "slope <= 1.2" in v[1]


def test_overhead_reads_both_ratios(edit):
    rows = [{"n": 16, "ratio": 3.0, "hmat_s": 3e-6, "numpy_s": 1e-6, "build_s": 1e-3},
            {"n": 1024, "ratio": 0.5, "hmat_s": 5e-6, "numpy_s": 1e-5, "build_s": 1e-2}]
    assert bench.verdict_overhead(rows)[0] == R
    edit("P-limit-overhead", "ratio_smallest", threshold=4.0)
    assert bench.verdict_overhead(rows)[0] == N
    edit("P-limit-overhead", "ratio_smallest", threshold=1.0)
    edit("P-limit-overhead", "ratio_larger", threshold=0.4)
    assert bench.verdict_overhead(rows)[0] == N


def _cache_row(dense, h, lo, hi):
    return {"shape": "m x n", "dtype": "float64", "dense_bytes": dense, "h_bytes": h,
            "excess": (lo + hi) / 2, "excess_lo": lo, "excess_hi": hi}


def test_cache_capacity_reads_both_thresholds(edit):
    rows = [_cache_row(4, 2, -0.1, 0.05), _cache_row(16, 6, 0.05, 0.2)]  # llc 8
    assert cache.verdict(rows, llc=8).verdict == R
    edit("C-cache-capacity", "excess_only_h_fits", threshold=0.1)
    assert cache.verdict(rows, llc=8).verdict == INC
    edit("C-cache-capacity", "excess_only_h_fits", threshold=0.0)
    edit("C-cache-capacity", "excess_both_fit", threshold=-0.2)
    assert cache.verdict(rows, llc=8).verdict == N


def test_precision_verdicts_read_their_thresholds(edit):
    P = pytest.importorskip("hmatbook.precision_families")
    lower = dict(family="a", h_error=0.1, int8_error=0.2, h_memory=0.25, int8_memory=0.257)
    below = dict(family="d", h_error=10.0, int8_error=10.5, h_memory=0.25, int8_memory=0.251,
                 interval=(-1.0, -0.1))
    assert P.verdict_error([lower, below])[0] == R
    edit("C-prec-error", "error_difference", threshold=-0.2)
    assert P.verdict_error([lower])[0] == N  # -0.1 lies above -0.2
    assert P.verdict_error([below])[0] == INC  # [-1.0, -0.1] straddles -0.2

    ntk = [dict(family="a", ntk_change=0.01, memory_fraction=0.25),
           dict(family="b", ntk_change=0.049, memory_fraction=0.24)]
    assert P.verdict_ntk(ntk)[0] == R
    edit("C-prec-ntk", "ntk_change", threshold=0.04)
    assert P.verdict_ntk(ntk)[0] == N

    fast = np.full(9, 0.3) + np.linspace(0, 0.01, 9)
    assert P.verdict_speed(fast, bytes_ratio=0.4)[0] == R  # bound 1.25 x 0.4 = 0.5
    edit("C-prec-speed", "time_ratio", threshold=0.7)  # bound 0.28
    assert P.verdict_speed(fast, bytes_ratio=0.4)[0] == N
