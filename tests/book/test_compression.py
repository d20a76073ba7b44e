"""hmatbook.compression: matched-memory comparison of the Part II methods, deployable models,
inference timing, NTK comparison and fine-tuning on a small PINN."""

from __future__ import annotations

import pytest
import torch

from hmat.nn import HLinear
from hmatbook import compression as C
from hmatbook import pinn

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_pinn():
    problem = pinn.Poisson1D("sin", 1)
    model = pinn.MLP(1, 1, width=32, depth=3, seed=0)
    data = pinn.make_data(problem, 32, seed=0)
    pinn.train(model, problem, data, 60, lr=1e-2, progress=False)
    return problem, model, data


def test_compare_methods_matches_memory(small_pinn):
    problem, model, data = small_pinn
    rows, models = C.compare_methods(model, problem, data,
                                     methods=["hmatrix", "hmatrix_rank", "svd", "prune", "quant"],
                                     fractions=[0.5], n_test=100, finetune_epochs=3,
                                     progress=False)
    assert rows[0]["method"] == "dense" and rows[0]["memory_fraction"] == 1.0
    for r in rows[1:]:
        if r["reachable"]:
            assert r["memory_fraction"] <= 0.5 + 1e-9
            assert {"train_error", "test_error", "ft_test_error", "rel_weight_error"} <= set(r)
        else:
            assert "budget" in r["reason"]
    # every reachable compressed model really stores what the row says
    for (_method, f), m in models.items():
        mem = C.hidden_memory(m)
        assert mem["memory_fraction"] <= f + 1e-9 and mem["hidden_dense_nbytes"] == 2 * (
            32 * 32 + 32) * 4


def test_deployable_models_agree(small_pinn):
    problem, model, data = small_pinn
    X = problem.test_points(50).float()
    for method in ("hmatrix", "svd", "prune", "quant"):
        comp, _ = C.compress_hidden(model, method, 0.5)
        dep, note = C.deployable(comp)
        with torch.no_grad():
            ref = comp(X)
            out = dep(X)
        tol = 5e-2 if method == "quant" else 1e-5  # int8 kernels quantize activations too
        assert torch.allclose(out, ref, atol=tol * float(ref.abs().max()) + 1e-6), (method, note)
        if method == "hmatrix":
            assert "numba" in note and any(isinstance(m, HLinear) for m in dep.modules())
        if method == "prune":
            assert "CSR" in note


def test_time_inference_returns_medians(small_pinn):
    _, model, _ = small_pinn
    t = C.time_inference({"a": model, "b": model}, torch.rand(10, 1), repeats=2, rounds=2)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    with pytest.raises(ValueError):
        C.time_inference({"a": model}, torch.rand(2, 1), repeats=0)


def test_ntk_comparison_and_finetune(small_pinn):
    problem, model, data = small_pinn
    comp, _ = C.compress_hidden(model, "quant", 0.5)
    rows, spectra, K0 = C.ntk_comparison(model, {("quant", 0.5): comp}, problem, data.X_b,
                                         data.X_r[:6], progress=False)
    assert rows[0]["ntk_change_K"] < 0.1 and set(spectra) == {("dense", 1.0), ("quant", 0.5)}
    same, _, _ = C.ntk_comparison(model, {("dense", 1.0): model}, problem, data.X_b,
                                  data.X_r[:6], progress=False)
    assert same[0]["ntk_change_K"] == pytest.approx(0.0, abs=1e-12)
    rec = C.finetune_with_ntk(comp, problem, data, 4, 1e-4, 2, data.X_b, data.X_r[:6],
                              K_dense=K0)
    assert rec["step"] == [0, 2, 4] and rec["drift_own"][0] == 0.0 and len(rec["losses"]) == 4
