"""hmatbook.pinn: exact solutions satisfy their PDEs, batched and pointwise derivatives
agree, training lowers the loss, errors and data are seeded and well separated."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hmat.nn.ntk import point_derivatives
from hmatbook import pinn

torch.set_num_threads(1)


class Exact(nn.Module):
    """A 'network' that returns the exact solution (to test residuals)."""

    def __init__(self, problem):
        super().__init__()
        self.problem = problem
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        return self.problem.exact(x) + 0 * self.dummy


@pytest.mark.parametrize("problem", [pinn.Poisson1D("sin", 4), pinn.Poisson1D("multiscale"),
                                     pinn.Kovasznay(20.0)], ids=lambda p: p.name)
def test_exact_solution_satisfies_pde(problem):
    gen = torch.Generator().manual_seed(0)
    X = problem.sample_interior(50, gen)
    r = pinn.residual(Exact(problem), problem, X)
    assert r.shape == (50, problem.out_dim if problem.name == "kovasznay" else 1)
    scale = problem.residual_scale
    assert r.abs().max() / scale < 1e-10
    Xb = problem.boundary_points(40)
    if problem.name == "poisson1d":  # homogeneous Dirichlet ends
        assert problem.exact(Xb).abs().max() < 1e-12


def test_kovasznay_known_values():
    k = pinn.Kovasznay(20.0)
    lam = 10 - math.sqrt(100 + 4 * math.pi ** 2)
    assert k.lam == pytest.approx(lam)
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(k.exact(x), torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64))
    Xb = k.boundary_points(40)
    assert Xb.shape == (40, 2)
    on_edge = ((Xb[:, 0] == -0.5) | (Xb[:, 0] == 1.0) | (Xb[:, 1] == -0.5) | (Xb[:, 1] == 1.5))
    assert bool(on_edge.all())


def test_a_wrong_solution_has_a_residual():
    problem = pinn.Poisson1D("sin", 4)

    class Wrong(Exact):
        def forward(self, x):
            return torch.sin(3 * math.pi * x) + 0 * self.dummy

    r = pinn.residual(Wrong(problem), problem, torch.rand(20, 1, dtype=torch.float64))
    assert r.abs().max() > 1.0


@pytest.mark.parametrize("problem", [pinn.Poisson1D("sin", 2), pinn.Kovasznay()],
                         ids=lambda p: p.name)
def test_batched_derivatives_equal_pointwise_torch_func(problem):
    model = pinn.MLP(problem.in_dim, problem.out_dim, width=8, depth=2, dtype=torch.float64)
    X = problem.sample_interior(6, torch.Generator().manual_seed(1))
    u, du, d2u = pinn.derivatives(model, X)
    for i in range(len(X)):
        ui, dui, d2ui = point_derivatives(lambda x: model(x[None])[0], X[i])
        torch.testing.assert_close(u[i], ui)
        torch.testing.assert_close(du[i], dui)
        torch.testing.assert_close(d2u[i], d2ui)
    r = problem.residual(X, u, du, d2u)
    torch.testing.assert_close(pinn.residual(model, problem, X), r)


def test_training_lowers_loss_and_is_seeded(tmp_path, monkeypatch):
    monkeypatch.setenv("HMAT_CACHE_DIR", str(tmp_path))
    problem = pinn.Poisson1D("sin", 1)
    kw = dict(width=16, depth=2, epochs=150, lr=1e-2, n_collocation=32, progress=False)
    m1, data, info = pinn.trained_pinn(problem, **kw)
    assert info["losses"][-1] < 0.2 * info["losses"][0] and not info["cached"]
    m2, _, info2 = pinn.trained_pinn(problem, **kw)  # from the cache
    assert info2["cached"] and info2["seconds"] == info["seconds"]
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    m3, _, info3 = pinn.trained_pinn(problem, cache=False, **kw)  # retrained: same numbers
    assert info3["losses"] == info["losses"]
    err = pinn.errors(m1, problem, data, 500)
    assert 0 <= err["train_error"] < 1 and 0 <= err["test_error"] < 1


def test_epoch_time_ratios_are_paired_and_leave_the_models_unchanged():
    problem = pinn.Poisson1D("sin", 1)
    data = pinn.make_data(problem, 32, 16, seed=0)
    a = pinn.MLP(problem.in_dim, problem.out_dim, 8, 2, seed=0)
    b = pinn.MLP(problem.in_dim, problem.out_dim, 16, 2, seed=1)
    before = [p.detach().clone() for p in b.parameters()]
    ratios = pinn.epoch_time_ratios(a, b, problem, data, rounds=4, steps=1)
    assert len(ratios) == 4 and all(r > 0 and math.isfinite(r) for r in ratios)
    for p, q in zip(b.parameters(), before, strict=True):
        torch.testing.assert_close(p, q)  # the Adam steps ran on copies
    with pytest.raises(ValueError, match="rounds"):
        pinn.epoch_time_ratios(a, b, problem, data, rounds=0)


def test_test_grid_is_not_training_data():
    problem = pinn.Kovasznay()
    data = pinn.make_data(problem, 200, 40, seed=0, dtype=torch.float64)
    test = problem.test_points(20)
    d = torch.cdist(test, torch.cat([data.X_r, data.X_b]))
    assert d.min() > 0
    again = pinn.make_data(problem, 200, 40, seed=0, dtype=torch.float64)
    torch.testing.assert_close(data.X_r, again.X_r)


def test_mlp_structure():
    m = pinn.MLP(2, 3, width=32, depth=4)
    assert m.hidden_names == ["layers.1", "layers.2", "layers.3"]
    assert all(m.is_hidden(n, m.get_submodule(n)) for n in m.hidden_names)
    assert not m.is_hidden("layers.0", m.layers[0])
    assert m(torch.rand(5, 2)).shape == (5, 3)


def test_bad_input():
    with pytest.raises(ValueError, match="solution"):
        pinn.Poisson1D("cos")
    with pytest.raises(ValueError, match="k must"):
        pinn.Poisson1D("sin", 0)
    with pytest.raises(ValueError, match="Re"):
        pinn.Kovasznay(-1.0)
    with pytest.raises(ValueError, match="width"):
        pinn.MLP(1, 1, width=0)
    with pytest.raises(ValueError, match="activation"):
        pinn.MLP(1, 1, activation="relu6")
    with pytest.raises(ValueError, match="n_collocation"):
        pinn.make_data(pinn.Poisson1D(), 0)
    with pytest.raises(ValueError, match="problem"):
        pinn.make_problem("heat")
    with pytest.raises(ValueError, match="epochs"):
        pinn.train(pinn.MLP(1, 1, width=4), pinn.Poisson1D(),
                   pinn.make_data(pinn.Poisson1D(), 4), epochs=-1)
