"""hmatbook.precision_families: adaptive-precision H-matrices to a byte budget, the methods of
the low-rank + low-precision page at matched memory, paired statistics and the three verdicts."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from hmat.nn import dense_layer_nbytes, layer_nbytes  # noqa: E402
from hmatbook import precision_families as P  # noqa: E402

torch.set_num_threads(1)


def _linear(m=64, n=48, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n, m)
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    smooth = 1.0 / (1.0 + np.abs(i / m - j / n) * 10)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(smooth, dtype=torch.float32) + 0.05 * lin.weight)
    return lin


@pytest.mark.parametrize("fraction", [0.3, 0.15])
def test_hprec_to_budget_fits_and_is_certified(fraction):
    lin = _linear()
    budget = int(fraction * dense_layer_nbytes(lin))
    mod, info = P.hprec_to_budget(lin, budget)
    assert mod.nbytes <= budget
    w = lin.weight.detach().double()
    err = float(torch.linalg.norm(mod.dense_weight().detach().double() - w) / torch.linalg.norm(w))
    assert err <= info["tol"] * (1 + 1e-6)  # the bound holds on what is stored (rounding too)
    # the search finds (about) the smallest tolerance that fits: 0.9x of it does not fit
    tighter, _ = P.hprec_to_budget(lin, budget, tol_lo=0.9 * info["tol"], iters=1)
    import hmat

    H = hmat.compress(lin.weight.detach().numpy(), tol=0.9 * info["tol"], adaptive=True,
                      precision="adaptive")
    assert H.nbytes + 4 * lin.out_features > budget or tighter.nbytes <= budget


def test_hprec_to_budget_bad_input():
    lin = _linear()
    with pytest.raises(ValueError, match="budget"):
        P.hprec_to_budget(lin, 0)
    with pytest.raises(ValueError, match="tol_lo"):
        P.hprec_to_budget(lin, 5000, tol_lo=1.5)
    with pytest.raises(ValueError, match="below the smallest"):
        P.hprec_to_budget(lin, 300)


def test_compress_one_every_method_within_budget():
    lin = _linear()
    budget = int(0.25 * dense_layer_nbytes(lin))
    for m in P.METHODS:
        mod, info = P.compress_one(lin, m, budget)
        assert info["nbytes"] == layer_nbytes(mod)
        if m == "int8":  # one size: codes, a scale per output channel, the bias
            assert info["nbytes"] == 64 * 48 + 4 * 64 + 4 * 64
        else:
            assert info["nbytes"] <= budget
        assert 0.0 <= info["rel_weight_error"] < 1.0
    with pytest.raises(ValueError, match="method"):
        P.compress_one(lin, "zip", budget)


def _toy_family():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                        nn.Linear(64, 2))
    X = torch.randn(50, 4)
    y = (X[:, 0] > 0).long()

    def evaluate(m):
        with torch.no_grad():
            wrong = (m(X).argmax(1) != y).numpy().astype(float)
            err = float(torch.linalg.norm(m(X) - net(X)))
        return {"error": err, "wrong": wrong}

    return P.Family("toy", "toy", net, lambda n, mod: n == "2", evaluate, "output change")


def test_sweep_rows_memory_and_levels():
    fam = _toy_family()
    rows, wrong = P.sweep(fam, P.METHODS, [0.5, 0.25], keep_levels=(0.25,), progress=False)
    assert set(fam.notes["models"]) == {(m, 0.25) for m in P.METHODS}
    assert rows[0]["method"] == "dense" and rows[0]["error"] == 0.0
    by = {(r["method"], r["level"]): r for r in rows}
    i8 = next(r for r in rows if r["method"] == "int8")
    # int8 has one size, (n + 8) / (4 n + 4) of dense for n = 64 inputs, attached to 25 %
    assert i8["memory_fraction"] == pytest.approx((64 + 8) / (4 * 64 + 4))
    assert i8["level"] == 0.25
    for (m, level), r in by.items():
        if m in ("dense", "int8") or not r["reachable"]:
            continue
        assert r["memory_fraction"] <= level + 1e-12
        assert r["error"] >= 0
        assert wrong[(m, level)].shape == (50,)
    assert by[("hmatrix_prec", 0.25)]["rel_weight_error"] >= 0
    with pytest.raises(ValueError, match="methods"):
        P.sweep(fam, ["zip"], [0.5], progress=False)


def test_compress_model_needs_a_layer_and_a_fraction():
    fam = _toy_family()
    with pytest.raises(ValueError, match="no nn.Linear"):
        P.compress_model(fam.model, lambda n, mod: False, "svd", 0.5)
    with pytest.raises(ValueError, match="fraction"):
        P.compress_model(fam.model, fam.predicate, "svd", 1.5)


def test_int8_level():
    assert P.int8_level(0.2568, [0.5, 0.25, 0.1]) == 0.25
    assert P.int8_level(0.277, [0.25, 0.1]) == 0.25
    assert P.int8_level(0.40, [0.25, 0.1]) is None


def test_paired_error_difference():
    a = np.array([1, 1, 0, 0, 0, 0, 1, 0] * 25, dtype=float)  # A wrong on 3 of 8
    b = np.array([1, 0, 0, 0, 0, 0, 0, 0] * 25, dtype=float)  # B wrong on 1 of 8
    d, lo, hi = P.paired_error_difference(a, b)
    assert d == pytest.approx(100 * (3 - 1) / 8)
    assert lo < d < hi and lo > 0  # 50 discordant pairs, all one way: clearly higher
    d0, lo0, hi0 = P.paired_error_difference(a, a)
    assert d0 == lo0 == hi0 == 0.0
    with pytest.raises(ValueError, match="equal-length"):
        P.paired_error_difference(a, b[:-1])


def test_paired_ratio():
    A = np.eye(50, dtype=np.float32)
    x = np.ones(50, dtype=np.float32)
    r = P.paired_ratio(A, A, x, n=5, rounds=6, warmup=1)
    assert r.shape == (6,) and np.all(r > 0)
    with pytest.raises(ValueError, match="rounds"):
        P.paired_ratio(A, A, x, rounds=0)


def test_verdict_error():
    lower = dict(family="a", h_error=0.1, int8_error=0.2, h_memory=0.25, int8_memory=0.257)
    higher = dict(family="b", h_error=0.3, int8_error=0.2, h_memory=0.25, int8_memory=0.257)
    straddle = dict(family="c", h_error=10.0, int8_error=10.5, h_memory=0.25,
                    int8_memory=0.251, interval=(-1.0, 0.2))
    below = dict(straddle, family="d", interval=(-1.0, -0.1))
    assert P.verdict_error([lower, below])[0] == "reproduced"
    assert P.verdict_error([lower, higher, straddle])[0] == "not reproduced"
    assert P.verdict_error([lower, straddle])[0] == "inconclusive"
    assert P.verdict_error([])[0] == "not testable here"
    with pytest.raises(ValueError, match="stores more"):
        P.verdict_error([dict(lower, h_memory=0.3)])


def test_verdict_ntk_and_speed():
    assert P.verdict_ntk([dict(family="a", ntk_change=0.01, memory_fraction=0.25),
                          dict(family="b", ntk_change=0.049, memory_fraction=0.24)])[0] \
        == "reproduced"
    assert P.verdict_ntk([dict(family="a", ntk_change=0.01, memory_fraction=0.25),
                          dict(family="b", ntk_change=0.05, memory_fraction=0.24)])[0] \
        == "not reproduced"
    assert P.verdict_ntk([])[0] == "not testable here"
    fast = np.full(9, 0.3) + np.linspace(0, 0.01, 9)
    slow = np.full(9, 0.9) + np.linspace(0, 0.01, 9)
    v = P.verdict_speed(fast, bytes_ratio=0.4)  # bound 0.5
    assert v[0] == "reproduced" and v.interval[1] <= 0.5
    assert P.verdict_speed(slow, bytes_ratio=0.4)[0] == "not reproduced"
    assert P.verdict_speed(np.linspace(0.3, 0.7, 9), bytes_ratio=0.4)[0] == "inconclusive"


def test_cached_model_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HMAT_CACHE_DIR", str(tmp_path))
    calls = []

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.weight.fill_(3.0)
        return {"seconds": 1.5}

    m1, i1 = P.cached_model("toy", {"a": 1}, lambda: nn.Linear(2, 2), train)
    m2, i2 = P.cached_model("toy", {"a": 1}, lambda: nn.Linear(2, 2), train)
    assert len(calls) == 1 and not i1["cached"] and i2["cached"] and i2["seconds"] == 1.5
    assert torch.equal(m2.weight, torch.full((2, 2), 3.0))
    P.cached_model("toy", {"a": 2}, lambda: nn.Linear(2, 2), train)
    assert len(calls) == 2


def test_linear_family_top1_loss():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((10, 40)).astype(np.float32)
    b = np.zeros(10, np.float32)
    X = rng.standard_normal((200, 40)).astype(np.float32)
    labels = np.argmax(X @ W.T, axis=1)
    labels[:20] = (labels[:20] + 1) % 10  # dense top-1 90 %
    fam = P.linear_family("lin", "lin", W, b, X, labels)
    base = fam.evaluate(fam.model)
    assert base["top1"] == pytest.approx(90.0) and base["error"] == 0.0
    comp, _ = P.compress_model(fam.model, fam.predicate, "svd", 0.3)
    r = fam.evaluate(comp)
    assert r["error"] == pytest.approx(90.0 - r["top1"]) and r["wrong"].shape == (200,)
