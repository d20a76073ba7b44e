"""hmatbook.part2_claims: the Part II verdict functions (criteria of data/claims.yml), each with
inputs for each of its outcomes; there is no "partly"."""

from __future__ import annotations

from hmatbook import part2_claims as V

R, N, INC, U = "reproduced", "not reproduced", "inconclusive", "not testable here"


def test_verdict_exp1_each_outcome():
    fast, slow, straddle = [1.1] * 9, [2.0] * 9, [1.2, 1.3, 1.4, 1.45, 1.5, 1.6, 1.7, 1.8, 1.9]

    def var(name, err, ratios=None, mem=0.45):
        return dict(name=name, error=err, epoch_ratios=ratios, memory_fraction=mem)

    assert V.exp1_poisson(0.01, [var("a", 0.015, fast)])[0] == R
    assert V.exp1_poisson(0.01, [var("a", 0.05, fast)])[0] == N  # error too large
    assert V.exp1_poisson(0.01, [var("a", 0.015, slow)])[0] == N  # H training too slow
    # the epoch-time interval straddles 1.5x: neither side can be claimed
    v = V.exp1_poisson(0.01, [var("a", 0.015, straddle)])
    assert v[0] == INC and "time part inconclusive" in v[1]
    # post-training compression only: training time in H form is not measured
    assert V.exp1_poisson(0.01, [var("a", 0.015)])[0] == U
    # the best variant decides, not any variant
    v = V.exp1_poisson(0.01, [var("a", 0.001, mem=1.01), var("b", 0.05, fast)])
    assert v[0] == N and "not counted" in v[1]
    assert V.exp1_poisson(0.01, [var("a", 0.001, mem=1.2)])[0] == U


def test_verdict_mech3_each_outcome():
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.015, params=50)])[0] == R
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.05, params=50)])[0] == N
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.0, params=60)])[0] == U


def test_verdict_threshold_and_bound_each_outcome():
    assert V.exp2_threshold([0.1, 0.3], [0.9, 0.5], [0.1, 0.3])[0] == R
    assert V.exp2_threshold([0.1, 0.3], [0.9, 0.95], [0.1, 0.3])[0] == N
    assert V.exp2_threshold([0.3, 0.1], [0.5, 0.9], [0.3, 0.1])[0] == R  # unsorted
    ok = [dict(error=0.09, bound=0.1, storage=0.5)]
    assert V.mech1_adaptive_bound(ok)[0] == R
    v = V.mech1_adaptive_bound(ok + [dict(error=0.0, bound=0.01, storage=1.01)])
    assert v[0] == N and "stores at least as much" in v[1]
    assert V.mech1_adaptive_bound([dict(error=0.2, bound=0.1, storage=0.5)])[0] == N


def _rows(errors):
    out = [dict(method="dense", fraction=1.0, test_error=0.01, reachable=True)]
    for f, per in errors.items():
        for m, e in per.items():
            out.append(dict(method=m, fraction=f, test_error=e, reachable=True,
                            memory_fraction=f))
    return out


def test_verdict_outperforms_each_outcome():
    win = _rows({0.5: dict(hmatrix=0.01, svd=0.02, prune=0.03, quant=0.04)})
    assert V.key_outperforms({"P": win})[0] == R
    tie = _rows({0.5: dict(hmatrix=0.02, svd=0.02, prune=0.03, quant=0.04)})
    assert V.key_outperforms({"P": tie})[0] == INC  # a tie shows no advantage
    lose = _rows({0.5: dict(hmatrix=0.02, svd=0.02, prune=0.03, quant=0.01)})
    assert V.key_outperforms({"P": win, "K": lose})[0] == N
    assert V.key_outperforms({"P": _rows({})})[0] == U


def test_verdict_ntk_each_outcome():
    ntk = [dict(method="hmatrix", fraction=0.5, ntk_change_K=0.01),
           dict(method="quant", fraction=0.5, ntk_change_K=0.02)]
    assert V.key_ntk(ntk)[0] == R
    ntk[0]["ntk_change_K"] = 0.03  # below 5 % but not the smallest: no "partly"
    assert V.key_ntk(ntk)[0] == N
    ntk[0]["ntk_change_K"] = 0.3
    assert V.key_ntk(ntk)[0] == N
    assert V.key_ntk(ntk[1:])[0] == U


def test_verdict_realtime_each_outcome():
    assert V.key_realtime(0.01, 1.0, [dict(name="h", error=0.0105, time=0.5)])[0] == R
    assert V.key_realtime(0.01, 1.0, [dict(name="h", error=0.05, time=0.5)])[0] == N
    assert V.key_realtime(0.01, 1.0, [dict(name="h", error=0.0105, time=1.5)])[0] == N


def test_verdict_mech2_each_outcome():
    c = [dict(name="h", method="hmatrix", ntk_change=0.02, memory_fraction=0.5, ft_error=0.015)]
    v = V.mech2_ntk_training(0.01, c)
    assert v[0] == R and not v.qualifiers
    c[0]["ntk_change"] = 0.2
    v, text = V.mech2_ntk_training(0.01, c)
    assert v == U and "no H-matrix compression preserved" in text
    # another method that preserves the NTK tests the mechanism, and the verdict says so
    c.append(dict(name="q", method="quant", ntk_change=0.01, memory_fraction=0.25,
                  ft_error=0.012))
    v = V.mech2_ntk_training(0.01, c)
    assert v[0] == R and "'q'" in v[1] and "moved the NTK" in v[1]
    assert v.qualifiers[0].startswith("shown by another method")
    c.append(dict(name="q2", method="quant", ntk_change=0.03, memory_fraction=0.2, ft_error=0.05))
    assert V.mech2_ntk_training(0.01, c)[0] == N  # every preserving one must fine-tune well
    # storing as much as dense does not count as a compression
    c = [dict(name="d", method="svd", ntk_change=0.0, memory_fraction=1.0, ft_error=0.01)]
    assert V.mech2_ntk_training(0.01, c)[0] == U


def test_verdict_complexity_and_efficiency_each_outcome():
    v = V.complexity_knlogn(1.2, {"w": 2.0})
    assert v[0] == R and v.qualifiers[0].startswith("on a substitute: a smooth kernel")
    assert V.complexity_knlogn(1.6, {})[0] == N
    assert V.key_training_efficiency([0.95, 0.97, 0.99, 1.0, 1.0, 1.01, 0.98], 1.2)[0] == R
    assert V.key_training_efficiency([1.01] * 7, 1.2)[0] == R  # a tie
    assert V.key_training_efficiency([1.5] * 7, 1.2)[0] == N
    assert V.key_training_efficiency([1.0] * 7, 2.1)[0] == N
    # the interval straddles the tie threshold: inconclusive, not a verdict either way
    v = V.key_training_efficiency([0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2], 1.2)
    assert v[0] == INC and v.interval[0] <= 1.02 <= v.interval[1]


def test_verdict_cnn_each_outcome():
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=94.5, ft_acc=None)])[0] == R
    v = V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=90, ft_acc=94.5)])
    assert v[0] == R and v.qualifiers == ("only after fine-tuning",)
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=90, ft_acc=91)])[0] == N
    # 540 test images: a 1.5-point loss is within the noise of the 1-point criterion
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=93.5)], n_test=540)[0] == INC
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.6, acc=95)])[0] == U
    # paired: 1 image lost, 0 gained, of 540: a loss of 0.19 points, certainly below 1
    row = dict(memory_fraction=0.4, acc=95.0 - 100 / 540, acc_changed=(1, 0))
    assert V.exp3_cnn(95.0, [row], n_test=540)[0] == R


def test_verdict_navier_stokes_each_outcome():
    ns = _rows({0.5: dict(hmatrix=0.015, svd=0.02, prune=0.03, quant=0.04)})
    assert V.check_navier_stokes(0.01, ns)[0] == R
    ns = _rows({0.5: dict(hmatrix=0.05, svd=0.02, prune=0.03, quant=0.04)})
    assert V.check_navier_stokes(0.01, ns)[0] == N
    ns = _rows({0.5: dict(hmatrix=0.015, svd=0.02, prune=0.03, quant=0.011)})
    assert V.check_navier_stokes(0.01, ns)[0] == N  # within 2x, but not the best
    assert V.check_navier_stokes(0.01, _rows({0.75: dict(hmatrix=0.01)}))[0] == U
    assert V.is_monotone([1, 2, 2, 3], True) and not V.is_monotone([1, 3, 2], True)


def test_verdict_ablation_each_outcome():
    def rows(h, k):
        return _rows({0.5: dict(hmatrix=h, hmatrix_rank=k, svd=0.03)})

    assert V.check_ablation({"P": rows(0.01, 0.02)})[0] == R
    assert V.check_ablation({"P": rows(0.03, 0.02)})[0] == N
    assert V.check_ablation({"P": rows(0.02, 0.0201)})[0] == INC
    assert V.check_ablation({"P": _rows({0.5: dict(hmatrix=0.01, svd=0.02)})})[0] == U
