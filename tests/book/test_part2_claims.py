"""hmatbook.part2_claims: the Part II verdict functions (criteria of data/claims.yml)."""

from __future__ import annotations

import math

from hmatbook import part2_claims as V


def test_verdict_exp1_and_mech3():
    v = V.exp1_poisson(0.01, 100, [dict(name="a", error=0.015, seconds=120, params=10)])
    assert v[0] == "reproduced"
    v = V.exp1_poisson(0.01, 100, [dict(name="a", error=0.05, seconds=120, params=10)])
    assert v[0] == "partly reproduced"
    v = V.exp1_poisson(0.01, 100, [dict(name="a", error=0.05, seconds=500, params=10)])
    assert v[0] == "not reproduced"
    v = V.exp1_poisson(0.01, 100, [dict(name="a", error=0.01, seconds=100, memory_fraction=1.01),
                                   dict(name="b", error=0.05, seconds=500, memory_fraction=0.5)])
    assert v[0] == "not reproduced" and "not counted" in v[1]
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.015, params=50)])[0] == \
        "reproduced"
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.05, params=50)])[0] == \
        "not reproduced"
    assert V.mech3_fewer_parameters(0.01, 100, [dict(name="a", error=0.0, params=60)])[0] == \
        "not testable here"


def test_verdict_threshold_and_bound():
    assert V.exp2_threshold([0.1, 0.3], [0.9, 0.5], [0.1, 0.3])[0] == "reproduced"
    assert V.exp2_threshold([0.1, 0.3], [0.9, 0.95], [0.1, 0.3])[0] == "partly reproduced"
    assert V.exp2_threshold([0.3, 0.1], [0.5, 0.9], [0.3, 0.1])[0] == "reproduced"  # unsorted
    ok = [dict(error=0.09, bound=0.1, storage=0.5)]
    assert V.mech1_adaptive_bound(ok)[0] == "reproduced"
    assert V.mech1_adaptive_bound(ok + [dict(error=0.0, bound=0.01, storage=1.01)])[0] == \
        "partly reproduced"
    assert V.mech1_adaptive_bound([dict(error=0.2, bound=0.1, storage=0.5)])[0] == \
        "not reproduced"


def _rows(errors):
    out = [dict(method="dense", fraction=1.0, test_error=0.01, reachable=True)]
    for f, per in errors.items():
        for m, e in per.items():
            out.append(dict(method=m, fraction=f, test_error=e, reachable=True,
                            memory_fraction=f))
    return out


def test_verdict_outperforms_and_ntk():
    win = _rows({0.5: dict(hmatrix=0.01, svd=0.02, prune=0.03, quant=0.04)})
    assert V.key_outperforms({"P": win})[0] == "reproduced"
    tie = _rows({0.5: dict(hmatrix=0.02, svd=0.02, prune=0.03, quant=0.04)})
    assert V.key_outperforms({"P": tie})[0] == "partly reproduced"
    lose = _rows({0.5: dict(hmatrix=0.02, svd=0.02, prune=0.03, quant=0.01)})
    assert V.key_outperforms({"P": win, "K": lose})[0] == "not reproduced"
    ntk = [dict(method="hmatrix", fraction=0.5, ntk_change_K=0.01),
           dict(method="quant", fraction=0.5, ntk_change_K=0.02)]
    assert V.key_ntk(ntk)[0] == "reproduced"
    ntk[0]["ntk_change_K"] = 0.3
    assert V.key_ntk(ntk)[0] == "not reproduced"


def test_verdict_other_claims():
    assert V.key_realtime(0.01, 1.0, [dict(name="h", error=0.0105, time=0.5)])[0] == "reproduced"
    assert V.key_realtime(0.01, 1.0, [dict(name="h", error=0.05, time=0.5)])[0] == \
        "not reproduced"
    c = [dict(name="h", method="hmatrix", ntk_change=0.02, memory_fraction=0.5, ft_error=0.015)]
    assert V.mech2_ntk_training(0.01, c)[0] == "reproduced"
    c[0]["ntk_change"] = 0.2
    v, text = V.mech2_ntk_training(0.01, c)
    assert v == "not testable here" and "no H-matrix compression preserved" in text
    # any NTK-preserving method tests the mechanism; the H-matrix's failure to preserve is said
    c.append(dict(name="q", method="quant", ntk_change=0.01, memory_fraction=0.25,
                  ft_error=0.012))
    v, text = V.mech2_ntk_training(0.01, c)
    assert v == "reproduced" and "'q'" in text and "moved the NTK" in text
    c.append(dict(name="q2", method="quant", ntk_change=0.03, memory_fraction=0.2, ft_error=0.05))
    assert V.mech2_ntk_training(0.01, c)[0] == "partly reproduced"
    c[1]["ft_error"] = 0.03
    assert V.mech2_ntk_training(0.01, c)[0] == "not reproduced"
    # storing as much as dense does not count as a compression
    c = [dict(name="d", method="svd", ntk_change=0.0, memory_fraction=1.0, ft_error=0.01)]
    assert V.mech2_ntk_training(0.01, c)[0] == "not testable here"
    assert V.complexity_knlogn(1.2, {"w": 2.0})[0] == "reproduced"
    assert V.complexity_knlogn(1.6, {})[0] == "not reproduced"
    assert V.key_training_efficiency(1.0, 1.0, 1.2)[0] == "reproduced"
    assert V.key_training_efficiency(1.0, 1.5, 1.2)[0] == "partly reproduced"
    assert V.key_training_efficiency(1.0, 1.01, 1.2)[0] == "reproduced"  # a tie
    assert V.key_training_efficiency(1.0, 1.05, 1.2)[0] == "partly reproduced"
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=94.5, ft_acc=None)])[0] == \
        "reproduced"
    assert V.exp3_cnn(95.0, [dict(memory_fraction=0.4, acc=90, ft_acc=94.5)])[0] == \
        "partly reproduced"
    ns = _rows({0.5: dict(hmatrix=0.015, svd=0.02, prune=0.03, quant=0.04)})
    assert V.check_navier_stokes(0.01, ns)[0] == "reproduced"
    ns = _rows({0.5: dict(hmatrix=0.05, svd=0.02, prune=0.03, quant=0.04)})
    assert V.check_navier_stokes(0.01, ns)[0] == "not reproduced"
    assert V.is_monotone([1, 2, 2, 3], True) and not V.is_monotone([1, 3, 2], True)
    assert math.isclose(V.TIE, 0.02)
