"""Physics-informed neural networks (PINNs) for Part II: problems, network, training, errors.

Problems (exact solutions known, so errors are measured, not estimated):

* :class:`Poisson1D`: ``-u'' = f`` on [0, 1], ``u(0) = u(1) = 0``, with ``u = sin(k pi x)`` or the
  multi-scale ``u = sin(2 pi x) + 0.1 sin(50 pi x)``;
* :class:`Kovasznay`: steady incompressible Navier-Stokes at Re = 20 on [-0.5, 1] x [-0.5, 1.5]
  (Kovasznay 1948), outputs (u, v, p); residuals of x- and y-momentum and continuity.

A residual is written once, pointwise, as ``residual(x, u, du, d2u)`` (``du`` the Jacobian
(out, d), ``d2u`` the Hessian diagonals (out, d)); :func:`derivatives` supplies these by batched
autograd for training, :func:`hmat.nn.ntk.point_derivatives` by torch.func for the NTK.

Training: full-batch Adam on fixed, seeded collocation points (optionally L-BFGS after), with a
progress bar. Errors: relative L2 over all outputs on the training points and on a fine test grid
whose points are not training points (the generalization gap).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = ["MLP", "Poisson1D", "Kovasznay", "PinnData", "TrainResult", "make_data",
           "derivatives", "residual", "pinn_loss", "train", "rel_l2", "predict", "errors",
           "trained_pinn", "cache_dir", "make_problem"]

_ACTIVATIONS = {"tanh": torch.tanh, "sin": torch.sin}


class MLP(nn.Module):
    """Fully connected network: ``in -> width -> ... -> width -> out`` with ``depth`` hidden layers
    (so ``depth - 1`` square ``width x width`` weight matrices, the ones worth compressing)."""

    def __init__(self, in_dim: int, out_dim: int, width: int = 256, depth: int = 3,
                 activation: str = "tanh", dtype=torch.float32, seed: int | None = 0):
        super().__init__()
        for name, v, lo in (("in_dim", in_dim, 1), ("out_dim", out_dim, 1), ("width", width, 1),
                            ("depth", depth, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{activation!r}")
        sizes = [in_dim] + [width] * depth + [out_dim]
        # PyTorch's default initialization (uniform, +-1/sqrt(fan_in)): its first layer is wide
        # enough in x to fit sin(4 pi x) quickly, unlike Glorot's +-0.09 for fan_in 1.
        with torch.random.fork_rng():  # seeded without touching the global generator
            if seed is not None:
                torch.manual_seed(seed)
            self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype)
                                        for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.activation = activation
        self.width, self.depth = width, depth

    def forward(self, x):
        act = _ACTIVATIONS[self.activation]
        for lin in self.layers[:-1]:
            x = act(lin(x))
        return self.layers[-1](x)

    def taylor(self, x: torch.Tensor):
        """``u``, ``du`` (N, out, d) and the Hessian diagonals ``d2u`` (N, out, d) in ONE forward
        pass ("Taylor mode"): value, first and second directional derivatives along each input
        axis are propagated together through every layer (linear maps act on derivatives without
        the bias; the activation by the chain rule). Differentiable w.r.t. the parameters by
        ordinary first-order autograd, so PINN training needs no double backward."""
        n, d = x.shape
        z = x
        dz = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, n, d)
        d2z = torch.zeros(d, n, d, dtype=x.dtype, device=x.device)
        act = self.activation
        for i, lin in enumerate(self.layers):
            out = lin(torch.cat([z[None], dz, d2z], 0))  # (1 + 2d, N, width)
            z, dz, d2z = out[0], out[1: 1 + d], out[1 + d:]
            if lin.bias is not None:  # derivatives of an affine map carry no bias
                dz, d2z = dz - lin.bias, d2z - lin.bias
            if i == len(self.layers) - 1:
                break
            if act == "tanh":
                a = torch.tanh(z)
                s = 1 - a * a
                z, dz, d2z = a, s * dz, s * d2z - 2 * a * s * dz * dz
            else:  # sin
                c = torch.cos(z)
                z, dz, d2z = torch.sin(z), c * dz, c * d2z - torch.sin(z) * dz * dz
        return z, dz.permute(1, 2, 0), d2z.permute(1, 2, 0)

    @property
    def hidden_names(self) -> list[str]:
        """Qualified names of the square hidden layers (``layers.1`` ... ``layers.{depth-1}``)."""
        return [f"layers.{i}" for i in range(1, self.depth)]

    @staticmethod
    def is_hidden(name: str, layer: nn.Module) -> bool:
        """Predicate for :func:`hmat.nn.replace_linear`: the square hidden layers."""
        return layer.in_features == layer.out_features and name.startswith("layers.")


# ------------------------------------------------------------------------------------ problems
@dataclass(frozen=True)
class Poisson1D:
    """``-u'' = f`` on [0, 1] with ``u(0) = u(1) = 0``.

    ``solution="sin"``: ``u = sin(k pi x)`` (``k`` an integer); ``"multiscale"``:
    ``u = sin(2 pi x) + 0.1 sin(50 pi x)``.
    """

    solution: str = "sin"
    k: int = 4
    name: str = field(default="poisson1d", init=False)
    in_dim: int = field(default=1, init=False)
    out_dim: int = field(default=1, init=False)
    second_order_outputs: tuple = field(default=(0,), init=False)

    def __post_init__(self):
        if self.solution not in ("sin", "multiscale"):
            raise ValueError(f"solution must be 'sin' or 'multiscale', got {self.solution!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be a positive integer (u(1) = 0 needs it), got {self.k!r}")

    def _terms(self):
        if self.solution == "sin":
            return [(1.0, self.k * math.pi)]
        return [(1.0, 2 * math.pi), (0.1, 50 * math.pi)]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return sum(a * torch.sin(w * x[..., :1]) for a, w in self._terms())

    def forcing(self, x: torch.Tensor) -> torch.Tensor:
        return sum(a * w * w * torch.sin(w * x[..., :1]) for a, w in self._terms())

    @property
    def residual_scale(self) -> float:
        """max |f|: the residual is divided by it in the loss, so both loss terms are O(1)."""
        return float(sum(a * w * w for a, w in self._terms()))

    def residual(self, x, u, du, d2u):
        """``-u'' - f`` at the points (shape (..., 1))."""
        return -d2u[..., 0, :1] - self.forcing(x)

    def sample_interior(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 1, generator=gen, dtype=torch.float64)

    def boundary_points(self, n: int) -> torch.Tensor:
        return torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    def test_points(self, n: int) -> torch.Tensor:
        """``n`` cell midpoints of a uniform grid (measure-zero overlap with random points)."""
        return ((torch.arange(n, dtype=torch.float64) + 0.5) / n)[:, None]


@dataclass(frozen=True)
class Kovasznay:
    """Kovasznay flow: steady Navier-Stokes with the exact solution
    ``u = 1 - exp(l x) cos(2 pi y)``, ``v = l/(2 pi) exp(l x) sin(2 pi y)``,
    ``p = (1 - exp(2 l x))/2``, ``l = Re/2 - sqrt(Re^2/4 + 4 pi^2)``, on [-0.5, 1] x [-0.5, 1.5].
    Boundary data: u, v and p on the four edges."""

    Re: float = 20.0
    name: str = field(default="kovasznay", init=False)
    in_dim: int = field(default=2, init=False)
    out_dim: int = field(default=3, init=False)
    second_order_outputs: tuple = field(default=(0, 1), init=False)
    lower: tuple = field(default=(-0.5, -0.5), init=False)
    upper: tuple = field(default=(1.0, 1.5), init=False)

    def __post_init__(self):
        if not (isinstance(self.Re, (int, float)) and self.Re > 0):
            raise ValueError(f"Re must be a positive number, got {self.Re!r}")

    @property
    def lam(self) -> float:
        return self.Re / 2 - math.sqrt(self.Re ** 2 / 4 + 4 * math.pi ** 2)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        X, Y = x[..., 0], x[..., 1]
        e = torch.exp(self.lam * X)
        u = 1 - e * torch.cos(2 * math.pi * Y)
        v = self.lam / (2 * math.pi) * e * torch.sin(2 * math.pi * Y)
        p = 0.5 * (1 - torch.exp(2 * self.lam * X))
        return torch.stack([u, v, p], dim=-1)

    residual_scale = 1.0

    def residual(self, x, u, du, d2u):
        """Momentum (x, y) and continuity residuals, shape (..., 3)."""
        U, V = u[..., 0], u[..., 1]
        ux, uy, vx, vy = du[..., 0, 0], du[..., 0, 1], du[..., 1, 0], du[..., 1, 1]
        px, py = du[..., 2, 0], du[..., 2, 1]
        lap_u = d2u[..., 0, 0] + d2u[..., 0, 1]
        lap_v = d2u[..., 1, 0] + d2u[..., 1, 1]
        r1 = U * ux + V * uy + px - lap_u / self.Re
        r2 = U * vx + V * vy + py - lap_v / self.Re
        r3 = ux + vy
        return torch.stack([r1, r2, r3], dim=-1)

    def sample_interior(self, n: int, gen: torch.Generator) -> torch.Tensor:
        lo = torch.tensor(self.lower, dtype=torch.float64)
        hi = torch.tensor(self.upper, dtype=torch.float64)
        return lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=torch.float64)

    def boundary_points(self, n: int) -> torch.Tensor:
        """``n`` points evenly spread over the four edges (corners once)."""
        (x0, y0), (x1, y1) = self.lower, self.upper
        per = max(1, n // 4)
        t = torch.arange(per, dtype=torch.float64) / per
        edges = [torch.stack([x0 + (x1 - x0) * t, torch.full_like(t, y0)], 1),
                 torch.stack([torch.full_like(t, x1), y0 + (y1 - y0) * t], 1),
                 torch.stack([x1 - (x1 - x0) * t, torch.full_like(t, y1)], 1),
                 torch.stack([torch.full_like(t, x0), y1 - (y1 - y0) * t], 1)]
        return torch.cat(edges, 0)

    def test_points(self, n: int) -> torch.Tensor:
        """An ``n x n`` grid of cell midpoints."""
        (x0, y0), (x1, y1) = self.lower, self.upper
        s = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        gx, gy = torch.meshgrid(x0 + (x1 - x0) * s, y0 + (y1 - y0) * s, indexing="ij")
        return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def make_problem(name: str, **kwargs):
    """``"poisson"`` -> :class:`Poisson1D`, ``"kovasznay"`` -> :class:`Kovasznay`."""
    if name in ("poisson", "poisson1d"):
        return Poisson1D(**kwargs)
    if name == "kovasznay":
        return Kovasznay(**kwargs)
    raise ValueError(f"problem must be 'poisson' or 'kovasznay', got {name!r}")


# ------------------------------------------------------------------------------------ data
@dataclass
class PinnData:
    """Training points: collocation ``X_r``, boundary ``X_b`` with exact values ``U_b``."""

    X_r: torch.Tensor
    X_b: torch.Tensor
    U_b: torch.Tensor

    def to(self, dtype):
        return PinnData(self.X_r.to(dtype), self.X_b.to(dtype), self.U_b.to(dtype))


def make_data(problem, n_collocation: int, n_boundary: int = 2, seed: int = 0,
              dtype=torch.float32) -> PinnData:
    """Seeded random collocation points and evenly spread boundary points."""
    if isinstance(n_collocation, bool) or not isinstance(n_collocation, int) or n_collocation < 1:
        raise ValueError(f"n_collocation must be a positive integer, got {n_collocation!r}")
    gen = torch.Generator().manual_seed(seed)
    X_r = problem.sample_interior(n_collocation, gen)
    X_b = problem.boundary_points(n_boundary)
    return PinnData(X_r, X_b, problem.exact(X_b)).to(dtype)


# ------------------------------------------------------------------------------------ physics
def derivatives(model: nn.Module, X: torch.Tensor, second_order_outputs=None,
                taylor: bool = True):
    """``u`` (N, out), ``du`` (N, out, d), ``d2u`` (N, out, d) Hessian diagonals, differentiable
    w.r.t. the parameters. An :class:`MLP` uses its one-pass :meth:`MLP.taylor` (unless
    ``taylor=False``); any other model batched autograd with ``create_graph``, where second
    derivatives are formed only for ``second_order_outputs`` (default all; others zero)."""
    if taylor and isinstance(model, MLP):
        return model.taylor(X.detach())
    X = X.detach().requires_grad_(True)
    u = model(X)
    n, out = u.shape
    d = X.shape[1]
    outs = range(out) if second_order_outputs is None else second_order_outputs
    du = torch.stack([torch.autograd.grad(u[:, o].sum(), X, create_graph=True)[0]
                      for o in range(out)], dim=1)
    cols = []
    for o in range(out):
        if o in outs:
            cols.append(torch.stack([torch.autograd.grad(du[:, o, j].sum(), X,
                                                         create_graph=True)[0][:, j]
                                     for j in range(d)], dim=1))
        else:
            cols.append(torch.zeros_like(du[:, o]))
    return u, du, torch.stack(cols, dim=1)


def residual(model: nn.Module, problem, X: torch.Tensor) -> torch.Tensor:
    """PDE residual of the network at the points (N, n_res)."""
    u, du, d2u = derivatives(model, X, problem.second_order_outputs)
    return problem.residual(X, u, du, d2u)


def pinn_loss(model: nn.Module, problem, data: PinnData, boundary_weight: float = 1.0):
    """``mean(r^2) / scale^2 + w_b mean((u_b - g)^2)``; returns (loss, residual part, boundary
    part) with the parts unweighted."""
    r = residual(model, problem, data.X_r) / problem.residual_scale
    lr = (r ** 2).mean()
    lb = ((model(data.X_b) - data.U_b) ** 2).mean()
    return lr + boundary_weight * lb, lr, lb


@dataclass
class TrainResult:
    losses: list
    seconds: float
    epochs: int
    lbfgs_steps: int = 0

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(1, self.epochs + self.lbfgs_steps)

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1]) if self.losses else float("nan")


def epoch_time_ratios(reference: nn.Module, model: nn.Module, problem, data: PinnData,
                      rounds: int = 15, steps: int = 3) -> list[float]:
    """Per-round ratios t(model) / t(reference) of one full-batch Adam epoch (loss, backward,
    step), the two alternating within each round (``steps`` epochs each), on copies so that the
    models are not changed: paired rounds see the same machine load, unlike two training runs
    timed at different moments (or one of them read from a cache)."""
    import copy

    if rounds < 1 or steps < 1:
        raise ValueError(f"rounds and steps must be >= 1, got {rounds} and {steps}")
    pairs = []
    for m in (reference, model):
        c = copy.deepcopy(m)
        c.train()
        pairs.append((c, torch.optim.Adam([q for q in c.parameters() if q.requires_grad],
                                          lr=1e-6)))

    def run(c, opt):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss, _, _ = pinn_loss(c, problem, data)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    for c, opt in pairs:  # warm-up (first calls compile kernels, allocate)
        run(c, opt)
    ratios = []
    for r in range(rounds):
        order = pairs if r % 2 == 0 else pairs[::-1]
        t = {id(c): run(c, opt) for c, opt in order}
        ratios.append(t[id(pairs[1][0])] / t[id(pairs[0][0])])
    return ratios


def train(model: nn.Module, problem, data: PinnData, epochs: int, lr: float = 1e-3,
          lr_decay: float = 0.5, lbfgs_steps: int = 0, boundary_weight: float = 1.0,
          progress: bool = True, desc: str = "train", callback=None,
          callback_every: int = 0) -> TrainResult:
    """Full-batch Adam for ``epochs`` steps (learning rate times ``lr_decay`` over the run, decayed
    exponentially), then ``lbfgs_steps`` L-BFGS iterations. ``callback(model, step)`` runs every
    ``callback_every`` steps (e.g. to record the NTK). Returns losses and wall time."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gamma = lr_decay ** (1.0 / max(1, epochs))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    losses = []
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, mininterval=5.0)
    for step in bar:
        if callback is not None and callback_every and step % callback_every == 0:
            callback(model, step)
        opt.zero_grad(set_to_none=True)
        loss, _, _ = pinn_loss(model, problem, data, boundary_weight)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.2e}")
    if lbfgs_steps:
        lb = torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=50,
                               line_search_fn="strong_wolfe")

        def closure():
            lb.zero_grad(set_to_none=True)
            loss, _, _ = pinn_loss(model, problem, data, boundary_weight)
            loss.backward()
            return loss

        for _ in tqdm(range(lbfgs_steps), desc=desc + " (L-BFGS)", disable=not progress):
            losses.append(float(lb.step(closure).detach()))
    if callback is not None and callback_every:
        callback(model, epochs)
    seconds = time.perf_counter() - t0
    model.eval()
    return TrainResult(losses, seconds, epochs, lbfgs_steps)


# ------------------------------------------------------------------------------------ errors
def predict(model: nn.Module, X: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """Network output in inference mode (eval + no_grad: H-matrix layers use the numba kernels)."""
    dtype = next(model.parameters()).dtype
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(X[i: i + batch].to(dtype)) for i in range(0, len(X), batch)])
    finally:
        model.train(was)


def rel_l2(model: nn.Module, problem, X: torch.Tensor, output: int | None = None) -> float:
    """``||u_net - u||_2 / ||u||_2`` over the points (all outputs, or one output)."""
    pred = predict(model, X).to(torch.float64)
    ref = problem.exact(X.to(torch.float64))
    if output is not None:
        pred, ref = pred[:, output], ref[:, output]
    return float(torch.linalg.norm(pred - ref) / torch.linalg.norm(ref))


def errors(model: nn.Module, problem, data: PinnData, n_test: int) -> dict:
    """Relative L2 error on the training points (collocation and boundary) and on the unseen
    test grid; for several outputs also per output on the test grid."""
    X_train = torch.cat([data.X_r, data.X_b])
    X_test = problem.test_points(n_test)
    out = {"train_error": rel_l2(model, problem, X_train),
           "test_error": rel_l2(model, problem, X_test)}
    if problem.out_dim > 1:
        for i, name in enumerate(("u", "v", "p")[: problem.out_dim]):
            out[f"test_error_{name}"] = rel_l2(model, problem, X_test, output=i)
    return out


# ------------------------------------------------------------------------------------ cache
def cache_dir() -> Path:
    """Where trained networks are cached: ``$HMAT_CACHE_DIR``, else ``<results dir>/cache``."""
    if os.environ.get("HMAT_CACHE_DIR"):
        path = Path(os.environ["HMAT_CACHE_DIR"])
    else:
        from .ledger import results_dir

        path = results_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def trained_pinn(problem, *, width: int = 256, depth: int = 3, epochs: int = 2000,
                 lr: float = 1e-3, lr_decay: float = 0.5, lbfgs_steps: int = 0,
                 boundary_weight: float = 1.0, n_collocation: int = 256, n_boundary: int = 2,
                 seed: int = 0, cache: bool = True, progress: bool = True):
    """Train (or load from the cache) a dense PINN; returns ``(model, data, info)``.

    ``info`` holds the training losses and the wall time measured when it was trained (and
    whether it came from the cache), so notebooks can share one trained network.
    """
    cfg = dict(problem=type(problem).__name__, problem_args=_problem_args(problem), width=width,
               depth=depth, epochs=epochs, lr=lr, lr_decay=lr_decay, lbfgs_steps=lbfgs_steps,
               boundary_weight=boundary_weight, n_collocation=n_collocation,
               n_boundary=n_boundary, seed=seed, torch=torch.__version__)
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
    data = make_data(problem, n_collocation, n_boundary, seed)
    model = MLP(problem.in_dim, problem.out_dim, width, depth, seed=seed)
    path = cache_dir() / f"pinn-{problem.name}-{key}.pt" if cache else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["state"])
        model.eval()
        return model, data, {**saved["info"], "cached": True}
    res = train(model, problem, data, epochs, lr=lr, lr_decay=lr_decay, lbfgs_steps=lbfgs_steps,
                boundary_weight=boundary_weight, progress=progress,
                desc=f"train dense {problem.name}")
    info = {"losses": res.losses, "seconds": res.seconds, "epochs": epochs,
            "lbfgs_steps": lbfgs_steps, "seconds_per_epoch": res.seconds_per_epoch,
            "config": cfg, "cached": False}
    if path is not None:
        torch.save({"state": model.state_dict(), "info": info}, path)
    return model, data, info


def _problem_args(problem) -> dict:
    return {k: v for k, v in asdict(problem).items()
            if k not in ("name", "in_dim", "out_dim", "second_order_outputs", "lower", "upper")}
