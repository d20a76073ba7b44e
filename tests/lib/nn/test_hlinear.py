"""hmat.nn: HLinear (inference, autograd incl. second derivatives, to_hmatrix), replace_linear,
the compression baselines and their common memory measure."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import hmat
from hmat.nn import (
    HLinear,
    LowRankLinear,
    QuantLinear,
    compress_layer,
    compress_network,
    csr_nbytes,
    dense_layer_nbytes,
    densify,
    effective_weight,
    layer_nbytes,
    model_nbytes,
    replace_linear,
)

torch.set_num_threads(1)


def _linear(m=40, n=30, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n, m, dtype=dtype)
    # smooth-plus-noise weight: some blocks are low rank, some are not
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    smooth = 1.0 / (1.0 + np.abs(i / m - j / n) * 10)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(smooth, dtype=dtype) + 0.01 * lin.weight)
    return lin


CASES = [dict(rank=3, leaf_size=8), dict(tol=0.05, adaptive=True, leaf_size=8),
         dict(rank=2, leaf_size=6, cluster="data"), dict(rank=4, admissibility="weak")]


def test_import_hmat_does_not_import_torch():
    code = "import sys, hmat; assert 'torch' not in sys.modules, 'hmat imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_inference_equals_dense_layer_of_H(kw, dtype):
    lin = _linear(dtype=dtype)
    h = HLinear.from_linear(lin, **kw)
    W = torch.from_numpy(h.to_hmatrix().to_dense())
    ref = nn.Linear(30, 40, dtype=dtype)
    with torch.no_grad():
        ref.weight.copy_(W)
        ref.bias.copy_(lin.bias)
    x = torch.randn(2, 5, 30, dtype=dtype)
    h.eval()
    with torch.no_grad():
        y = h(x)
        assert y.shape == (2, 5, 40)
        tol = 1e-4 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(y, ref(x), atol=tol, rtol=tol)
        torch.testing.assert_close(h(x[0, 0]), ref(x[0, 0]), atol=tol, rtol=tol)  # one vector


@pytest.mark.parametrize("mode", ["factored", "assemble", "auto"])
@pytest.mark.parametrize("kw", CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_trainable_forward_equals_inference(kw, mode):
    h = HLinear.from_linear(_linear(), forward_mode=mode, **kw)
    x = torch.randn(7, 30, dtype=torch.float64)
    h.eval()
    with torch.no_grad():
        y_inf = h(x)
    h.train()
    y = h(x)
    assert y.requires_grad
    torch.testing.assert_close(y, y_inf, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(h.dense_weight(), torch.from_numpy(h.to_hmatrix().to_dense()))


@pytest.mark.parametrize("mode", ["factored", "assemble"])
def test_gradcheck_first_and_second_derivatives(mode):
    h = HLinear.from_linear(_linear(16, 14), rank=1, leaf_size=4, cluster="data",
                            forward_mode=mode)
    assert len(h.U) > 0 and len(h.D) > 0
    names = [n for n, _ in h.named_parameters()]
    ps = tuple(p.detach().clone().requires_grad_(True) for p in h.parameters())
    x = torch.randn(2, 14, dtype=torch.float64, requires_grad=True)

    def f(x, *p):
        return torch.tanh(torch.func.functional_call(h, dict(zip(names, p, strict=True)), (x,)))

    assert torch.autograd.gradcheck(f, (x, *ps))
    assert torch.autograd.gradgradcheck(f, (x, *ps))


@pytest.mark.parametrize("mode", ["factored", "assemble"])
def test_gradients_match_dense_weight_reference(mode):
    """Factor gradients equal the chain rule through the dense weight: for a block B = U Vt,
    dL/dU = G_B Vt^T and dL/dVt = U^T G_B with G = dL/dW; dense blocks get G_B."""
    h = HLinear.from_linear(_linear(), rank=3, leaf_size=8, cluster="data", forward_mode=mode)
    x = torch.randn(9, 30, dtype=torch.float64)
    W = h.dense_weight().detach().clone().requires_grad_(True)
    (G,) = torch.autograd.grad(torch.tanh(x @ W.T + h.bias.detach()).pow(2).sum(), W)
    torch.tanh(h(x)).pow(2).sum().backward()
    for gi, g in enumerate(h._lr_groups):
        rows = getattr(h, f"_lr_rows{gi}").view(len(g["ids"]), g["m"])
        cols = getattr(h, f"_lr_cols{gi}").view(len(g["ids"]), g["n"])
        for i in range(len(g["ids"])):
            gb = G[rows[i]][:, cols[i]]
            k = int(g["ks"][i])
            u, vt = h.U[gi][i, :, :k].detach(), h.Vt[gi][i, :k].detach()
            torch.testing.assert_close(h.U[gi].grad[i, :, :k], gb @ vt.T)
            torch.testing.assert_close(h.Vt[gi].grad[i, :k], u.T @ gb)
    for gi, g in enumerate(h._d_groups):
        rows = getattr(h, f"_d_rows{gi}").view(len(g["ids"]), g["m"])
        cols = getattr(h, f"_d_cols{gi}").view(len(g["ids"]), g["n"])
        for i in range(len(g["ids"])):
            torch.testing.assert_close(h.D[gi].grad[i], G[rows[i]][:, cols[i]])


def test_second_derivative_in_input_through_network():
    """u_xx of a tanh MLP with an HLinear hidden layer equals the dense-weight network's."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                        nn.Linear(32, 1)).double()
    replace_linear(net, names=["2"], rank=3, leaf_size=8)
    ref = densify(net)
    assert isinstance(ref[2], nn.Linear)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]

    def uxx(model):
        xx = x.clone().requires_grad_(True)
        u = model(xx)
        du = torch.autograd.grad(u.sum(), xx, create_graph=True)[0]
        return torch.autograd.grad(du.sum(), xx, create_graph=True)[0]

    torch.testing.assert_close(uxx(net), uxx(ref), atol=1e-12, rtol=1e-10)


def test_padding_gets_no_gradient_and_to_hmatrix_after_training():
    h = HLinear.from_linear(_linear(), tol=0.05, adaptive=True, leaf_size=8,
                            forward_mode="factored")
    padded = [g for g in h._lr_groups if g["padded"]]
    opt = torch.optim.Adam(h.parameters(), lr=1e-2)
    x = torch.randn(16, 30, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        h(x).pow(2).mean().backward()
        opt.step()
    for gi, g in enumerate(h._lr_groups):
        if g["padded"]:
            mask = getattr(h, f"_lr_mask{gi}")
            assert torch.all(h.U[gi].grad * (1 - mask[:, None, :]) == 0)
    H = h.to_hmatrix()
    np.testing.assert_allclose(H.to_dense(), h.dense_weight().detach().numpy(), atol=1e-12)
    h.eval()
    with torch.no_grad():  # inference follows the trained parameters (cache invalidated)
        torch.testing.assert_close(h(x), x @ h.dense_weight().T + h.bias)
    assert padded or True  # padding may or may not occur; the checks above hold either way


def test_rank_zero_blocks():
    """Zero blocks are stored as rank-0 low-rank blocks; every forward path handles them."""
    W = np.zeros((64, 64))
    W[:32, :32] = np.random.default_rng(0).standard_normal((32, 32))
    W[32:, 32:] = 1.0
    H = hmat.compress(W, tol=0.01, adaptive=True, leaf_size=16)
    assert (H.ranks == 0).any()
    h = HLinear(H)
    x = torch.randn(3, 64, dtype=torch.float64)
    ref = x @ torch.from_numpy(W).T
    for mode in ("factored", "assemble"):
        h.forward_mode = mode
        torch.testing.assert_close(h(x), ref)
    h.eval()
    with torch.no_grad():
        torch.testing.assert_close(h(x), ref)
    np.testing.assert_allclose(h.to_hmatrix().to_dense(), W, atol=1e-12)


def test_counts_and_bytes():
    lin = _linear(dtype=torch.float32)
    H = hmat.compress(lin.weight.detach().numpy(), rank=3, leaf_size=8)
    h = HLinear(H, lin.bias)
    assert h.nbytes == H.nbytes + 40 * 4
    assert h.n_params == H.n_entries + 40
    assert h.dense_nbytes == dense_layer_nbytes(lin) == (40 * 30 + 40) * 4
    assert layer_nbytes(h) == h.nbytes


def test_replace_linear_mlp_and_torchvision():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                        nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    x = torch.randn(5, 2)
    replaced = replace_linear(mlp, lambda name, lin: lin.in_features == lin.out_features,
                              rank=4, leaf_size=16)
    assert sorted(replaced) == ["2", "4"]
    assert isinstance(mlp[2], HLinear) and isinstance(mlp[0], nn.Linear)
    assert mlp(x).shape == (5, 1)
    tv = pytest.importorskip("torchvision")
    model = tv.models.mobilenet_v2(weights=None, num_classes=50).eval()
    rep = replace_linear(model, names=["classifier.1"], rank=4, leaf_size=320)
    assert list(rep) == ["classifier.1"] and isinstance(model.classifier[1], HLinear)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 50)


# ------------------------------------------------------------------------------ baselines
@pytest.mark.parametrize("method", ["hmatrix", "svd", "prune", "quant"])
@pytest.mark.parametrize("fraction", [0.6, 0.3, 0.15])
def test_baselines_hit_budget(method, fraction):
    lin = _linear(64, 48, dtype=torch.float32)
    budget = int(fraction * dense_layer_nbytes(lin))
    mod, info = compress_layer(lin, method, budget)
    assert info["nbytes"] == layer_nbytes(mod) <= budget
    m, n, item = 64, 48, 4
    if method == "svd":  # the largest rank that fits
        k = info["rank"]
        assert info["nbytes"] == k * (m + n) * item + m * item
        assert (k + 1) * (m + n) * item + m * item > budget
    if method == "prune":
        nnz = int(mod.weight_mask.sum())
        assert info["nbytes"] == csr_nbytes(nnz, m, item) + m * item
        assert csr_nbytes(nnz + 1, m, item) + m * item > budget
        kept = mod.weight.detach().abs()[mod.weight_mask.bool()]
        dropped = lin.weight.detach().abs()[~mod.weight_mask.bool()]
        assert kept.min() >= dropped.max()  # magnitude pruning
    if method == "quant":
        bits = info["bits"]
        assert info["nbytes"] == math.ceil(m * n * bits / 8) + 4 * m + 4 * m
        if bits < 8:
            assert math.ceil(m * n * (bits + 1) / 8) + 8 * m > budget
    if method == "hmatrix":
        assert info["nbytes"] == mod.to_hmatrix().nbytes + 4 * m
        assert info["rel_weight_error"] <= info["certified_bound"] + 1e-6
    w = effective_weight(mod).detach()
    err = float(torch.linalg.norm(w - lin.weight.detach()) / torch.linalg.norm(lin.weight.detach()))
    assert info["rel_weight_error"] == pytest.approx(err, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("cluster", ["index", "data"])
def test_adaptive_plan_predicts_the_core_build(cluster):
    """The budget search predicts the adaptive build's stored entries from singular values; it
    must agree with hmat.compress (guards against the two drifting apart)."""
    from hmat.nn.budget import AdaptivePlan

    W = _linear(64, 48).weight.detach().numpy()
    plan = AdaptivePlan(W, leaf_size=8, cluster=cluster)
    for tol in (0.01, 0.05, 0.2, 0.5, 0.9):
        H = hmat.compress(W, tol=tol, adaptive=True, leaf_size=8, cluster=cluster)
        entries, n_lr, n_d = plan.predict(tol)
        assert (entries, n_lr, n_d) == (H.n_entries, len(H.lr_desc), len(H.d_desc)), tol


def test_int8_and_quant_semantics():
    lin = _linear(16, 12, dtype=torch.float32)
    q, info = compress_layer(lin, "int8", None)
    assert info["bits"] == 8 and q.nbytes == 16 * 12 + 4 * 16 + 4 * 16
    w = q.dense_weight().detach()
    scale = lin.weight.detach().abs().amax(1, keepdim=True) / 127
    codes = w / scale
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert codes.abs().max() <= 127 + 1e-4
    # straight-through gradient: d(sum w_q * c)/dw = c
    c = torch.randn_like(w)
    (g,) = torch.autograd.grad((q.dense_weight() * c).sum(), q.weight)
    torch.testing.assert_close(g, c)
    with pytest.raises(ValueError, match="below int8"):
        compress_layer(lin, "int8", 100)


def test_lowrank_is_truncated_svd():
    lin = _linear(dtype=torch.float64)
    mod, info = compress_layer(lin, "svd", None, rank=5)
    assert isinstance(mod, LowRankLinear) and info["rank"] == 5
    s = torch.linalg.svdvals(lin.weight.detach())
    expect = float(torch.sqrt((s[5:] ** 2).sum()) / torch.sqrt((s ** 2).sum()))
    assert info["rel_weight_error"] == pytest.approx(expect, rel=1e-8)


def test_compress_network_and_densify():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                        nn.Linear(32, 1))
    x = torch.rand(6, 1)
    for method in ("hmatrix", "svd", "prune", "quant"):
        new, infos = compress_network(net, method, 0.5,
                                      lambda n, m: m.in_features == m.out_features)
        assert list(infos) == ["2"]
        assert isinstance(new[0], nn.Linear) and not hasattr(new[0], "weight_mask")
        assert layer_nbytes(new[2]) <= 0.5 * dense_layer_nbytes(net[2])
        assert model_nbytes(new) < model_nbytes(net)
        with torch.no_grad():
            torch.testing.assert_close(densify(new)(x), new(x), atol=1e-6, rtol=1e-5)
    assert isinstance(net[2], nn.Linear) and not hasattr(net[2], "weight_mask")  # untouched


def test_quant_linear_bits_storage():
    q = QuantLinear(torch.randn(8, 10), None, bits=4, per_channel=False)
    assert q.nbytes == 40 + 4
    assert len(torch.unique(q.dense_weight().detach())) <= 15


# ------------------------------------------------------------------------------ bad input
def test_bad_input():
    lin = _linear()
    with pytest.raises(TypeError, match="HMatrix"):
        HLinear(lin.weight)
    with pytest.raises(ValueError, match="forward_mode"):
        HLinear.from_linear(lin, rank=2, forward_mode="fast")
    with pytest.raises(TypeError, match="nn.Linear"):
        HLinear.from_linear(nn.Conv1d(1, 1, 1), rank=2)
    h = HLinear.from_linear(lin, rank=2)
    with pytest.raises(ValueError, match="features"):
        h(torch.randn(3, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="bias"):
        HLinear(h.to_hmatrix(), torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        compress_layer(lin, "zip", 1000)
    with pytest.raises(ValueError, match="budget"):
        compress_layer(lin, "svd", -5)
    with pytest.raises(ValueError, match="below rank 1"):
        compress_layer(lin, "svd", 10)
    with pytest.raises(ValueError, match="not nn.Linear"):
        replace_linear(nn.Sequential(nn.Linear(2, 2)), names=["5"], rank=1)
    with pytest.raises(ValueError, match="fraction"):
        compress_network(nn.Sequential(nn.Linear(2, 2)), "svd", 1.5)
    with pytest.raises(ValueError, match="bits"):
        QuantLinear(torch.randn(2, 2), bits=9)
