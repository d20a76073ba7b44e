"""hmat.nn.hlinear: HLinear (inference, autograd incl. second derivatives, to_hmatrix, info),
replace_linear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hmat
from hmat.nn import HLinear, dense_layer_nbytes, densify, layer_nbytes, replace_linear

CASES = [dict(rank=3, leaf_size=8), dict(tol=0.05, adaptive=True, leaf_size=8),
         dict(rank=2, leaf_size=6, cluster="data"), dict(rank=4, admissibility="weak")]
IDS = [",".join(f"{a}={b}" for a, b in k.items()) for k in CASES]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_inference_equals_dense_layer_of_H(kw, dtype, make_linear):
    lin = make_linear(dtype=dtype)
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
@pytest.mark.parametrize("kw", CASES, ids=IDS)
def test_trainable_forward_equals_inference(kw, mode, make_linear):
    h = HLinear.from_linear(make_linear(), forward_mode=mode, **kw)
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
def test_gradcheck_first_and_second_derivatives(mode, make_linear):
    h = HLinear.from_linear(make_linear(16, 14), rank=1, leaf_size=4, cluster="data",
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
def test_gradients_match_dense_weight_reference(mode, make_linear):
    """Factor gradients equal the chain rule through the dense weight: with G = dL/dW at
    W = dense_weight(), dL/dtheta = (dW/dtheta)^T G for every factor and dense block (for a
    block B = U Vt: dL/dU = G_B Vt^T, dL/dVt = U^T G_B; dense blocks get G_B)."""
    h = HLinear.from_linear(make_linear(), rank=3, leaf_size=8, cluster="data",
                            forward_mode=mode)
    x = torch.randn(9, 30, dtype=torch.float64)
    W = h.dense_weight().detach().clone().requires_grad_(True)
    (G,) = torch.autograd.grad(torch.tanh(x @ W.T + h.bias.detach()).pow(2).sum(), W)
    params = [p for name, p in h.named_parameters() if name != "bias"]
    expect = torch.autograd.grad(h.dense_weight(), params, grad_outputs=G)
    torch.tanh(h(x)).pow(2).sum().backward()
    for p, e in zip(params, expect, strict=True):
        torch.testing.assert_close(p.grad, e)
    # and by hand for the dense-weight entries of one low-rank block of the H-matrix
    H = h.to_hmatrix()
    b = int(np.argmax(H.ranks))
    r0, m, c0, n, k, _ = H.lr_desc[b]
    rp = np.arange(40) if H.row_perm is None else H.row_perm
    cp = np.arange(30) if H.col_perm is None else H.col_perm
    rows, cols = rp[r0:r0 + m], cp[c0:c0 + n]
    u, vt = (torch.from_numpy(f) for f in H.lowrank_factors(b))
    gb = G[rows][:, cols]
    assert k > 0 and float(torch.linalg.norm(gb @ vt.T)) > 0
    # (which group and slot holds the block is internal: look for it among equal shapes)
    assert any(torch.allclose(gu[j, :, :k], gb @ vt.T)
               for gu in (p.grad for p in h.U) if gu.shape[1] == m and gu.shape[2] >= k
               for j in range(gu.shape[0]))  # the block's U gradient is G_B Vt^T
    assert any(torch.allclose(gv[j, :k], u.T @ gb)
               for gv in (p.grad for p in h.Vt) if gv.shape[2] == n and gv.shape[1] >= k
               for j in range(gv.shape[0]))  # and its Vt gradient U^T G_B


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


def test_padding_gets_no_gradient_and_to_hmatrix_after_training(make_linear):
    """Ranks within a group of equal-shape blocks are padded to the largest; the padding must
    get no gradient. The padding is internal (no public view), so this reads the group table
    and mask buffers that HLinear keeps for it."""
    h = HLinear.from_linear(make_linear(), tol=0.05, adaptive=True, leaf_size=8,
                            forward_mode="factored")
    opt = torch.optim.Adam(h.parameters(), lr=1e-2)
    x = torch.randn(16, 30, dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        h(x).pow(2).mean().backward()
        opt.step()
    assert any(g["padded"] for g in h._lr_groups)  # this layer has a padded group
    for gi, g in enumerate(h._lr_groups):
        if g["padded"]:
            mask = getattr(h, f"_lr_mask{gi}")
            assert torch.all(h.U[gi].grad * (1 - mask[:, None, :]) == 0)
    H = h.to_hmatrix()
    np.testing.assert_allclose(H.to_dense(), h.dense_weight().detach().numpy(), atol=1e-12)
    assert H.info["from"] == "HLinear.to_hmatrix"
    h.eval()
    with torch.no_grad():  # inference follows the trained parameters (cache invalidated)
        torch.testing.assert_close(h(x), x @ h.dense_weight().T + h.bias)


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


def test_counts_bytes_and_info(make_linear):
    lin = make_linear(dtype=torch.float32)
    H = hmat.compress(lin.weight.detach().numpy(), rank=3, leaf_size=8)
    h = HLinear(H, lin.bias)
    assert h.nbytes == H.nbytes + 40 * 4
    assert h.n_params == H.n_entries + 40
    assert h.dense_nbytes == dense_layer_nbytes(lin) == (40 * 30 + 40) * 4
    assert layer_nbytes(h) == h.nbytes
    assert h.n_blocks == H.n_blocks
    assert h.info == H.info and h.info["rank"] == 3
    h.info["rank"] = 99  # a copy: the layer's record is not changed through it
    assert h.info["rank"] == 3
    assert "blocks=" in repr(h)


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


def test_replace_linear_with_a_factory():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    rep = replace_linear(net, names="1", factory=lambda lin: nn.Identity())
    assert list(rep) == ["1"] and isinstance(net[1], nn.Identity)
    with pytest.raises(ValueError, match="either factory"):
        replace_linear(net, factory=lambda lin: lin, rank=2)
    with pytest.raises(TypeError, match="predicate"):
        replace_linear(net, predicate=3)
    with pytest.raises(TypeError, match="nn.Module"):
        replace_linear(object(), rank=1)


def test_bad_input(make_linear):
    lin = make_linear()
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
    with pytest.raises(ValueError, match="not nn.Linear"):
        replace_linear(nn.Sequential(nn.Linear(2, 2)), names=["5"], rank=1)


@pytest.mark.parametrize("kw", [dict(tol=0.02, precision="adaptive", leaf_size=8),
                                dict(rank=3, precision="int8", leaf_size=8),
                                dict(tol=0.02, adaptive=True, precision="float16", leaf_size=8)],
                         ids=["adaptive", "int8", "float16"])
def test_quantized_inference_runs_the_stored_matrix(kw, make_linear):
    lin = make_linear(dtype=torch.float32)
    h = HLinear.from_linear(lin, **kw)
    H = h.to_hmatrix()
    assert isinstance(H, hmat.QuantizedHMatrix) and h.precision == kw["precision"]
    assert h.nbytes == H.nbytes + 4 * 40 and h.nbytes < h.dense_nbytes
    W = lin.weight.detach().double().numpy()
    if kw["precision"] == "adaptive":  # the bound counts the rounding
        assert np.linalg.norm(W - H.to_dense(np.float64)) <= 0.02 * np.linalg.norm(W)
    x = torch.randn(7, 30)
    h.eval()
    with torch.no_grad():
        y = h(x)
    ref = torch.from_numpy(H.to_dense(np.float64)).float() @ x.T + lin.bias[:, None]
    torch.testing.assert_close(y, ref.T.detach(), atol=1e-5, rtol=1e-5)
    # the differentiable forward uses the decoded factors: the same function
    h.train()
    torch.testing.assert_close(h(x), y, atol=1e-5, rtol=1e-5)


def test_trained_factors_are_stored_again_in_the_precision(make_linear):
    lin = make_linear(dtype=torch.float32)
    h = HLinear.from_linear(lin, tol=0.05, precision="adaptive", leaf_size=8)
    H0 = h.to_hmatrix()
    assert h.to_hmatrix() is H0  # unchanged factors: the stored matrix itself
    opt = torch.optim.SGD(h.parameters(), lr=1e-2)
    x = torch.randn(16, 30)
    h(x).pow(2).sum().backward()
    opt.step()
    H1 = h.to_hmatrix()
    assert isinstance(H1, hmat.QuantizedHMatrix) and H1 is not H0
    # the export applies the precision to the trained factors within tol (rounding only)
    h._precision = None
    F = h.to_hmatrix().to_dense().astype(np.float64)
    assert np.linalg.norm(F - H1.to_dense(np.float64)) <= 0.05 * np.linalg.norm(F)
    assert np.linalg.norm(F - H0.to_dense(np.float64)) > 0  # training changed something


def test_hlinear_precision_arguments(make_linear):
    lin = make_linear(dtype=torch.float32)
    H = hmat.compress(lin.weight.detach().numpy(), rank=3, leaf_size=8)
    h = HLinear(H, lin.bias, precision="bfloat16")
    assert h.precision == "bfloat16" and h.nbytes < HLinear(H, lin.bias).nbytes
    with pytest.raises(ValueError, match="precision must be one of"):
        HLinear(H, precision="int4")
    with pytest.raises(ValueError, match="needs tol"):
        HLinear(H, precision="adaptive")
    with pytest.raises(ValueError, match="already stored"):
        HLinear(h.to_hmatrix(), precision="int8")
