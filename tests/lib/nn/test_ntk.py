"""hmat.nn.ntk: empirical NTK against explicit Jacobians, the Poisson K_rr against a hand
computation, spectra, relative change, and the NTK through compressed layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hmat.nn import compress_network, densify, replace_linear
from hmat.nn.ntk import (
    empirical_ntk,
    jacobian,
    n_parameters,
    pinn_ntk,
    relative_change,
    spectrum,
)


def _net(width=8, seed=0, out=1, inp=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inp, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, out)).double()


def _explicit_jacobian(net, X, fn=None):
    """Rows d g(x_i)/d theta by plain autograd, one point at a time."""
    rows = []
    params = list(net.parameters())
    for i in range(X.shape[0]):
        x = X[i: i + 1].clone().requires_grad_(True)
        val = net(x) if fn is None else fn(net, x)
        for o in range(val.shape[1]):
            g = torch.autograd.grad(val[0, o], params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(gg if gg is not None else torch.zeros_like(p)).reshape(-1)
                                   for gg, p in zip(g, params, strict=True)]))
    return torch.stack(rows)


def _uxx(net, x):
    u = net(x)
    du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    return torch.autograd.grad(du.sum(), x, create_graph=True)[0]


def _poisson_operator(x, u, du, d2u):
    return d2u[..., 0, :1]


def test_ntk_equals_explicit_jjt():
    net = _net(out=2, inp=2)
    X = torch.rand(5, 2, dtype=torch.float64)
    X2 = torch.rand(3, 2, dtype=torch.float64)
    J = _explicit_jacobian(net, X)
    assert J.shape == (10, n_parameters(net))
    torch.testing.assert_close(jacobian(net, X), J)
    torch.testing.assert_close(empirical_ntk(net, X), J @ J.T)
    torch.testing.assert_close(empirical_ntk(net, X, X2), J @ _explicit_jacobian(net, X2).T)


def test_poisson_krr_against_hand_computation():
    """One hidden layer: u = sum_i a_i tanh(w_i x + b_i) + c, so u_xx = sum_i a_i w_i^2 s''(z_i)
    with s'' = -2 t (1 - t^2), s''' = (6 t^2 - 2)(1 - t^2), t = tanh(z_i). Its gradient:
    d/da_i = w_i^2 s'', d/dw_i = a_i (2 w_i s'' + w_i^2 x s'''), d/db_i = a_i w_i^2 s''',
    d/dc = 0."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    X = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None]
    w, b = net[0].weight[:, 0].detach(), net[0].bias.detach()
    a = net[2].weight[0].detach()
    z = X * w + b  # (N, 6)
    t = torch.tanh(z)
    s2 = -2 * t * (1 - t ** 2)
    s3 = (6 * t ** 2 - 2) * (1 - t ** 2)
    d_w = a * (2 * w * s2 + w ** 2 * X * s3)
    d_b = a * w ** 2 * s3
    d_a = w ** 2 * s2
    d_c = torch.zeros(len(X), 1, dtype=torch.float64)
    J = torch.cat([d_w, d_b, d_a, d_c], 1)  # parameter order: W1, b1, W2, b2
    K = pinn_ntk(net, X[:2], X, _poisson_operator)
    torch.testing.assert_close(jacobian(net, X, _poisson_operator), J)
    torch.testing.assert_close(K["K_rr"], J @ J.T)
    # the other blocks against autograd
    Ju = _explicit_jacobian(net, X[:2])
    torch.testing.assert_close(K["K_uu"], Ju @ Ju.T)
    torch.testing.assert_close(K["K_ur"], Ju @ J.T)
    assert K["K"].shape == (9, 9)
    torch.testing.assert_close(K["K"], K["K"].T)


def test_poisson_krr_deeper_net_against_autograd_and_finite_differences():
    net = _net(width=5, seed=1)
    X = torch.rand(4, 1, dtype=torch.float64)
    J = jacobian(net, X, _poisson_operator)
    torch.testing.assert_close(J, _explicit_jacobian(net, X, _uxx))
    # central finite differences in one parameter entry
    p = net[2].weight
    eps = 1e-5
    with torch.no_grad():
        p[1, 2] += eps
    plus = _uxx(net, X.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        p[1, 2] -= 2 * eps
    minus = _uxx(net, X.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        p[1, 2] += eps
    col = 5 + 5 + 1 * 5 + 2  # W1 (5), b1 (5), then W2 row 1, column 2
    torch.testing.assert_close(J[:, col], ((plus - minus) / (2 * eps))[:, 0], atol=1e-6,
                               rtol=1e-5)


def test_spectrum_and_relative_change():
    net = _net()
    X = torch.rand(6, 1, dtype=torch.float64)
    K = empirical_ntk(net, X)
    ev = spectrum(K)
    assert torch.all(ev[:-1] >= ev[1:]) and ev[-1] > -1e-10
    torch.testing.assert_close(ev.sum(), torch.trace(K))
    assert relative_change(K, K) == 0.0
    assert relative_change(2 * K, K) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["hmatrix", "svd", "prune", "quant"])
def test_ntk_through_compressed_layers(method):
    """The NTK runs through every compressed layer; w.r.t. the dense parameterization at the
    compressed weights (densify) it equals the explicit J J^T of the densified network."""
    net = _net(width=16)
    X = torch.rand(4, 1, dtype=torch.float64)
    comp, _ = compress_network(net, method, 0.5, lambda n, m: m.in_features == m.out_features)
    K_own = pinn_ntk(comp, X[:2], X, _poisson_operator)["K_rr"]
    assert torch.isfinite(K_own).all() and K_own.shape == (4, 4)
    dense = densify(comp)
    J = _explicit_jacobian(dense, X, _uxx)
    torch.testing.assert_close(pinn_ntk(dense, X[:2], X, _poisson_operator)["K_rr"], J @ J.T)


def test_ntk_hlinear_own_parameters_equal_explicit():
    net = _net(width=16)
    replace_linear(net, names=["2"], rank=2, leaf_size=4)
    X = torch.rand(3, 1, dtype=torch.float64)
    torch.testing.assert_close(jacobian(net, X), _explicit_jacobian(net, X))


def test_bad_input():
    net = _net()
    with pytest.raises(ValueError, match="shape"):
        jacobian(net, torch.rand(5))
    with pytest.raises(TypeError, match="tensor"):
        jacobian(net, [[0.1]])
    with pytest.raises(TypeError, match="residual"):
        jacobian(net, torch.rand(2, 1, dtype=torch.float64), residual=3)
    with pytest.raises(ValueError, match="square"):
        spectrum(torch.rand(2, 3))
    with pytest.raises(ValueError, match="same shape"):
        relative_change(torch.eye(2), torch.eye(3))
