"""Empirical neural tangent kernel (NTK) with ``torch.func``, including the PINN blocks.

For parameters ``theta`` and a network ``u(x; theta)``, the empirical NTK on points ``X1, X2`` is
``K = J1 J2^T`` with ``J = d u(X) / d theta`` (one row per point and output, one column per
parameter). For a PINN with boundary/data points ``X_u`` and residual points ``X_r`` of a PDE
``L[u] = f``, Wang, Yu & Perdikaris ("When and why PINNs fail to train: a neural tangent kernel
perspective", J. Comput. Phys. 2022) define the blocks

    K_uu = J_u J_u^T,   K_ur = J_u J_r^T,   K_rr = J_r J_r^T,   K = [[K_uu, K_ur], [K_ru, K_rr]]

with ``J_u = d u(X_u)/d theta`` and ``J_r = d L[u](X_r)/d theta`` (for 1D Poisson ``L[u] = u_xx``:
the forcing does not depend on theta, so the residual's Jacobian is that of ``L[u]``).

``J`` is an (N x P) matrix: for a width-256 MLP with three hidden 256 x 256 layers P is about 2e5,
so N = 128 points take 100 MB in float32. Keep N modest (64-128 points); ``chunk_size`` bounds the
memory of the vectorized Jacobian.

A residual is given pointwise as ``residual(x, u, du, d2u)`` with, for one point ``x`` (d,),
``u`` (out,), ``du`` (out, d) the Jacobian and ``d2u`` (out, d) the diagonal of each output's
Hessian; the same function serves batched training in the book's ``hmatbook.pinn``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jacfwd, jacrev, vmap

__all__ = ["parameters_of", "point_derivatives", "jacobian", "empirical_ntk", "pinn_ntk",
           "spectrum", "relative_change", "n_parameters"]

Residual = Callable[..., torch.Tensor]


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters (detached), the variables of the NTK."""
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def n_parameters(model: nn.Module) -> int:
    return sum(v.numel() for v in parameters_of(model).values())


def point_derivatives(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """``u = f(x)`` (out,), ``du`` (out, d) and the Hessian diagonals ``d2u`` (out, d) at one
    point, with torch.func (reverse mode for the first, forward-over-reverse for the second)."""
    u = f(x)
    du = jacrev(f)(x)
    hess = jacfwd(jacrev(f))(x)  # (out, d, d)
    d2u = torch.diagonal(hess, dim1=-2, dim2=-1)
    return u, du, d2u


def _check_points(X, name):
    if not torch.is_tensor(X):
        raise TypeError(f"{name} must be a torch tensor of shape (N, d), got {type(X).__name__}")
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, d) with N >= 1, got {tuple(X.shape)}")


def jacobian(model: nn.Module, X: torch.Tensor, residual: Residual | None = None,
             params: dict | None = None, chunk_size: int | None = 16) -> torch.Tensor:
    """Jacobian ``d g(X) / d theta`` as an (N * n_out, P) matrix (rows point-major).

    ``g`` is the network output (``residual=None``) or ``residual(x, u, du, d2u)`` of the network
    at each point. ``params`` defaults to :func:`parameters_of` ``(model)``.
    """
    _check_points(X, "X")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = parameters_of(model) if params is None else params
    if not params:
        raise ValueError("the model has no trainable parameters")
    if residual is not None and not callable(residual):
        raise TypeError("residual must be a callable (x, u, du, d2u) -> tensor, or None")
    X = X.detach().to(next(iter(params.values())).dtype)

    def g(p, x):
        def f(xx):
            return functional_call(model, p, (xx[None],))[0]

        if residual is None:
            return f(x).reshape(-1)
        return residual(x, *point_derivatives(f, x)).reshape(-1)

    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():  # torch.func's own use of the deprecated torch.jit
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated",
                                    category=FutureWarning)
            jac = vmap(jacrev(g), in_dims=(None, 0), chunk_size=chunk_size)(params, X)
    finally:
        model.train(was_training)
    n = X.shape[0]
    return torch.cat([j.reshape(n, j.shape[1], -1) for j in jac.values()], dim=2).reshape(
        -1, sum(p.numel() for p in params.values()))


def empirical_ntk(model: nn.Module, X1: torch.Tensor, X2: torch.Tensor | None = None,
        residual1: Residual | None = None, residual2: Residual | None = None,
        params: dict | None = None, chunk_size: int | None = 16) -> torch.Tensor:
    """Empirical NTK ``J1 J2^T`` between the (operator-applied) outputs at X1 and at X2."""
    j1 = jacobian(model, X1, residual1, params, chunk_size)
    if X2 is None and residual2 is None:
        return j1 @ j1.T
    j2 = jacobian(model, X1 if X2 is None else X2, residual2, params, chunk_size)
    return j1 @ j2.T


def pinn_ntk(model: nn.Module, X_u: torch.Tensor, X_r: torch.Tensor, residual: Residual,
             params: dict | None = None, chunk_size: int | None = 16) -> dict[str, torch.Tensor]:
    """The PINN NTK blocks of Wang, Yu & Perdikaris: K_uu, K_ur, K_rr and the full K.

    ``residual(x, u, du, d2u)`` is the differential operator at a point (for Poisson the second
    derivative; a residual with a forcing term gives the same Jacobian).
    """
    _check_points(X_u, "X_u")
    _check_points(X_r, "X_r")
    j_u = jacobian(model, X_u, None, params, chunk_size)
    j_r = jacobian(model, X_r, residual, params, chunk_size)
    k_uu, k_ur, k_rr = j_u @ j_u.T, j_u @ j_r.T, j_r @ j_r.T
    k = torch.cat([torch.cat([k_uu, k_ur], 1), torch.cat([k_ur.T, k_rr], 1)], 0)
    return {"K_uu": k_uu, "K_ur": k_ur, "K_rr": k_rr, "K": k}


def spectrum(K: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a symmetric kernel matrix, largest first (float64)."""
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be a square matrix, got shape {tuple(K.shape)}")
    k64 = K.detach().to(torch.float64)
    return torch.linalg.eigvalsh(0.5 * (k64 + k64.T)).flip(0)


def relative_change(K: torch.Tensor, K0: torch.Tensor) -> float:
    """``||K - K0||_F / ||K0||_F``."""
    if K.shape != K0.shape:
        raise ValueError(f"K and K0 must have the same shape, got {tuple(K.shape)} and "
                         f"{tuple(K0.shape)}")
    k0 = K0.detach().to(torch.float64)
    return float(torch.linalg.norm(K.detach().to(torch.float64) - k0) / torch.linalg.norm(k0))
