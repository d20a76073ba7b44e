"""Compressed linear layers with one interface and one memory measure.

``compress_layer(linear, method, budget)`` returns a module that replaces ``linear`` and stores at
most ``budget`` bytes, counted as what would be stored for the compressed layer (weight part plus
the bias, in the layer's dtype):

* ``"dense"``: weight and bias, ``(m n + m) * itemsize``;
* ``"hmatrix"``: :class:`HLinear`, ``H.nbytes`` (factors, dense blocks, descriptors,
  permutations and the product schedule) plus the bias; with a budget the adaptive tolerance is
  bisected to the most accurate H-matrix that fits;
* ``"hmatrix_rank"``: the classic fixed-rank H-matrix (strong admissibility, ``eta`` 1, as in the
  thesis); with a budget the largest rank that fits;
* ``"svd"``: global truncated SVD ``W ~ A B`` (A: m x k, B: k x n), ``k (m + n) * itemsize``;
* ``"svd_int8"``: the same factors stored in int8 by :func:`hmat.precision.quantize` (a float32
  scale per column of ``A`` and per row of ``B``): ``k (m + n) + 8 k`` bytes; low rank and low
  precision without the hierarchy;
* ``"prune"``: magnitude pruning with ``torch.nn.utils.prune.l1_unstructured``, stored as CSR:
  ``nnz * (itemsize + 4)`` (values, int32 column indices) ``+ (m + 1) * 4`` (int32 row pointers);
* ``"int8"`` / ``"quant"``: symmetric per-output-channel quantization to ``bits`` bits (8 for
  ``"int8"``; ``"quant"`` takes the most bits from 8 down to 2 that fit), simulated in float
  (quantize-dequantize, straight-through gradient) so that gradients, residuals and the NTK work;
  ``ceil(m n bits / 8)`` bytes of codes plus ``m`` float32 scales. The real int8 kernels of
  ``torch.ao.quantization.quantize_dynamic`` only time CPU inference (:func:`dynamic_int8`).

Every compressed module has ``nbytes``, ``n_params`` and ``dense_weight()`` (the effective dense
weight, used to measure weight errors and the NTK at the compressed weights).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import hmat
from hmat import precision as _precision
from hmat.blocktree import Blocks, SpectralPlan
from hmat.cluster import resolve_cluster
from hmat.compressors import Accuracy, TruncatedSVD

from .hlinear import HLinear, replace_linear

__all__ = ["METHODS", "LowRankLinear", "LowRankInt8Linear", "QuantLinear", "compress_layer",
           "layer_nbytes", "layer_n_params", "effective_weight", "compress_network", "dynamic_int8",
           "csr_nbytes", "dense_layer_nbytes", "densify", "model_nbytes", "model_n_params",
           "deepcopy_model"]

METHODS = ("hmatrix", "hmatrix_rank", "svd", "svd_int8", "prune", "int8", "quant")
_INDEX_BYTES = 4  # int32 indices for CSR


def _bias_nbytes(layer) -> int:
    b = getattr(layer, "bias", None)
    return 0 if b is None else b.numel() * b.element_size()


def dense_layer_nbytes(linear: nn.Linear) -> int:
    """Bytes of a dense ``nn.Linear``: weight and bias."""
    w = linear.weight
    return w.numel() * w.element_size() + _bias_nbytes(linear)


def csr_nbytes(nnz: int, rows: int, itemsize: int) -> int:
    """Bytes of a CSR matrix: values, int32 column indices, int32 row pointers."""
    return nnz * (itemsize + _INDEX_BYTES) + (rows + 1) * _INDEX_BYTES


class LowRankLinear(nn.Module):
    """``y = A (B x) + b``: a global rank-k factorization of the weight (trainable)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor, bias=None):
        super().__init__()
        self.A = nn.Parameter(A.detach().clone())
        self.B = nn.Parameter(B.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.out_features, self.rank = A.shape
        self.in_features = B.shape[1]

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The global truncated SVD of the weight (:class:`hmat.TruncatedSVD` on the whole
        matrix), with the singular values split evenly between the two factors."""
        w = linear.weight.detach()
        u, vt = TruncatedSVD()(w.cpu().double().numpy(), Accuracy(rank=int(rank)))
        s = np.linalg.norm(u, axis=0)  # u = U_k diag(s): the columns' norms are the s_i
        sq = np.sqrt(s)
        scale = np.where(s > 0, sq / np.where(s > 0, s, 1.0), 0.0)
        a, b = u * scale, sq[:, None] * vt
        return cls(torch.from_numpy(a).to(w.dtype), torch.from_numpy(b).to(w.dtype), linear.bias)

    def forward(self, x):
        return F.linear(F.linear(x, self.B), self.A, self.bias)

    def dense_weight(self) -> torch.Tensor:
        return self.A @ self.B

    @property
    def n_params(self) -> int:
        return self.A.numel() + self.B.numel() + (0 if self.bias is None else self.bias.numel())

    @property
    def nbytes(self) -> int:
        return (self.A.numel() + self.B.numel()) * self.A.element_size() + _bias_nbytes(self)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankInt8Linear(LowRankLinear):
    """The global truncated SVD with int8 factors: ``A`` (m x k) with a float32 scale per column,
    ``B`` (k x n) with one per row (the singular values split evenly, so each rank-one term's
    size lives in its two scales). The parameters hold the decoded int8 values, so products,
    gradients and the NTK see exactly what is stored; training moves them off the int8 grid
    (quantize again to store a trained layer)."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankInt8Linear:
        lr = LowRankLinear.from_linear(linear, rank)
        qa = _precision.quantize(lr.A.detach().double(), "int8", per="column")
        qb = _precision.quantize(lr.B.detach().double(), "int8", per="row")
        dt = lr.A.dtype
        mod = cls(torch.from_numpy(qa.dequantize(np.float64)).to(dt),
                  torch.from_numpy(qb.dequantize(np.float64)).to(dt), linear.bias)
        return mod

    @staticmethod
    def stored_nbytes(m: int, n: int, rank: int) -> int:
        """Bytes of the int8 factors: ``rank (m + n)`` codes and ``2 rank`` float32 scales."""
        return rank * (m + n) + 8 * rank

    @property
    def nbytes(self) -> int:
        return self.stored_nbytes(self.out_features, self.in_features, self.rank) \
            + _bias_nbytes(self)


def _fake_quant(w, scale, qmax):
    """Quantize-dequantize with a straight-through gradient: value of the rounded weight,
    derivative of the identity (works with autograd, double backward and torch.func)."""
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


class QuantLinear(nn.Module):
    """A linear layer whose weight is used quantize-dequantized to ``bits`` bits.

    Symmetric quantization with one scale per output channel (``per_channel=True``) or per tensor;
    the scale follows the current weight (``max |w| / (2^(bits-1) - 1)``). Gradients pass
    straight through the rounding (STE), so it trains and its NTK is that of the dense network
    at the quantized weights.
    """

    def __init__(self, weight: torch.Tensor, bias=None, bits: int = 8, per_channel: bool = True):
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
            raise ValueError(f"bits must be an integer in 2..8, got {bits!r}")
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.bits = int(bits)
        self.per_channel = bool(per_channel)
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, per_channel: bool = True):
        return cls(linear.weight, linear.bias, bits=bits, per_channel=per_channel)

    def _scale(self, w):
        qmax = 2 ** (self.bits - 1) - 1
        a = w.detach().abs()
        amax = a.amax(dim=-1, keepdim=True) if self.per_channel else a.amax()
        return torch.clamp(amax, min=torch.finfo(w.dtype).tiny) / qmax, qmax

    def dense_weight(self) -> torch.Tensor:
        scale, qmax = self._scale(self.weight)
        return _fake_quant(self.weight, scale, qmax)

    def forward(self, x):
        return F.linear(x, self.dense_weight(), self.bias)

    @property
    def n_params(self) -> int:
        return self.weight.numel() + (0 if self.bias is None else self.bias.numel())

    @property
    def nbytes(self) -> int:
        codes = math.ceil(self.weight.numel() * self.bits / 8)
        scales = 4 * (self.out_features if self.per_channel else 1)
        return codes + scales + _bias_nbytes(self)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bits={self.bits}, per_channel={self.per_channel}")


def _is_pruned(layer) -> bool:
    return isinstance(layer, nn.Linear) and hasattr(layer, "weight_mask")


def layer_nbytes(layer: nn.Module) -> int:
    """The common memory measure (bytes that would be stored) of a dense or compressed layer."""
    if isinstance(layer, (HLinear, LowRankLinear, QuantLinear)):  # LowRankInt8Linear too
        return int(layer.nbytes)
    if _is_pruned(layer):
        w = layer.weight_orig
        nnz = int(layer.weight_mask.count_nonzero())
        return csr_nbytes(nnz, w.shape[0], w.element_size()) + _bias_nbytes(layer)
    if isinstance(layer, nn.Linear):
        return dense_layer_nbytes(layer)
    raise TypeError(f"no memory measure for {type(layer).__name__}")


def layer_n_params(layer: nn.Module) -> int:
    """Stored numbers of a layer (nonzeros for a pruned layer; indices not counted)."""
    if isinstance(layer, (HLinear, LowRankLinear, QuantLinear)):
        return int(layer.n_params)
    b = 0 if getattr(layer, "bias", None) is None else layer.bias.numel()
    if _is_pruned(layer):
        return int(layer.weight_mask.count_nonzero()) + b
    if isinstance(layer, nn.Linear):
        return layer.weight.numel() + b
    raise TypeError(f"no parameter count for {type(layer).__name__}")


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The dense weight that a (compressed) layer applies."""
    if hasattr(layer, "dense_weight"):
        return layer.dense_weight()
    if _is_pruned(layer):
        return layer.weight_orig * layer.weight_mask
    if isinstance(layer, nn.Linear):
        return layer.weight
    raise TypeError(f"no effective weight for {type(layer).__name__}")


def _check_linear(linear):
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")


def _hmatrix_to_budget(linear, budget, hmatrix_kwargs):
    """Most accurate adaptive H-matrix with ``nbytes <= budget``.

    The tolerance comes from :class:`AdaptivePlan` (one SVD per block-tree node, then a free
    bisection); the H-matrix is built once and its exact ``nbytes`` checked; if the schedule
    arrays push it over, the target shrinks by the overshoot and the search repeats.
    """
    w = linear.weight.detach().cpu().numpy()
    extra = {k: v for k, v in hmatrix_kwargs.items() if k not in ("leaf_size", "cluster")}
    if extra.get("method", "svd") != "svd" or set(extra) - {"method", "forward_mode"}:
        raise ValueError("a byte budget for 'hmatrix' supports only leaf_size, cluster, "
                         f"method='svd' and forward_mode; got {sorted(hmatrix_kwargs)}")
    leaf = hmatrix_kwargs.get("leaf_size", 32)
    cluster = hmatrix_kwargs.get("cluster", "index")
    rows = resolve_cluster(cluster, w.shape[0], leaf, features=w, name="row")
    cols = resolve_cluster(cluster, w.shape[1], leaf, features=w.T, name="col")
    a = np.ascontiguousarray(w[np.ix_(rows.perm, cols.perm)])
    plan = SpectralPlan(Blocks(rows, cols, a.dtype, a=a), hmat.AllAdmissible())
    target = budget - _bias_nbytes(linear)
    for _ in range(8):
        tol = plan.tol_for_bytes(target)
        if tol is None:
            break
        tol = min(tol * 1.0005, 0.999)
        mod = HLinear.from_linear(linear, tol=tol, adaptive=True, **hmatrix_kwargs)
        if mod.nbytes <= budget:
            return mod
        # the tables beyond the plan's estimate (segments, offsets, schedule): leave room for them
        tables = mod.nbytes - plan.predicted_nbytes(tol)
        target = min(target - 8, budget - tables)
    raise ValueError(f"budget {budget} B is below the smallest adaptive H-matrix of this layer "
                     "(tolerances up to 0.999)")


def _hmatrix_rank_to_budget(linear, budget, hmatrix_kwargs):
    """Fixed-rank H-matrix with the largest rank whose ``nbytes`` fits (bisection on the rank;
    storage grows with the rank until blocks turn dense)."""
    m, n = linear.weight.shape
    lo, hi, best = 1, min(m, n), None
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = HLinear.from_linear(linear, rank=mid, **hmatrix_kwargs)
        if cand.nbytes <= budget:
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise ValueError(f"budget {budget} B is below the rank-1 H-matrix of this layer "
                         "(its near-diagonal blocks are dense)")
    return best


def compress_layer(linear: nn.Linear, method: str, budget: int | None = None, **opts):
    """Compress one ``nn.Linear``; returns ``(module, info)``.

    ``budget`` is a number of bytes (the measure above); the compressed layer stores at most that
    many. Without a budget, give the method's own knob: ``tol``/``rank`` (hmatrix), ``rank`` (svd),
    ``amount`` (prune, fraction of weights removed), ``bits`` (quant). Other ``opts`` go to
    :meth:`HLinear.from_linear` (e.g. ``leaf_size``, ``cluster``) or ``per_channel`` (quant).
    ``info`` holds method, nbytes, budget, dense_nbytes, rel_weight_error (Frobenius) and the
    chosen knob.
    """
    _check_linear(linear)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
            raise ValueError(f"budget must be a positive number of bytes (int), got {budget!r}")
    dense_b = dense_layer_nbytes(linear)
    w = linear.weight.detach()
    m, n = w.shape
    item = w.element_size()
    bias_b = _bias_nbytes(linear)
    info = {"method": method, "budget": budget, "dense_nbytes": dense_b}
    if method == "hmatrix":
        hk = {k: v for k, v in opts.items() if k not in ("tol", "rank", "adaptive")}
        if budget is not None:
            if "tol" in opts or "rank" in opts:
                raise ValueError("hmatrix: give budget= or tol=/rank=, not both")
            mod = _hmatrix_to_budget(linear, budget, hk)
        else:
            if ("tol" in opts) == ("rank" in opts):
                raise ValueError("hmatrix without a budget needs exactly one of tol= or rank=")
            mod = HLinear.from_linear(linear, rank=opts.get("rank"), tol=opts.get("tol"),
                                      adaptive=opts.get("adaptive", "tol" in opts), **hk)
        info.update(tol=mod.info.get("tol"), rank=mod.info.get("rank"),
                    certified_bound=mod.info.get("certified_bound"), n_blocks=mod.n_blocks)
    elif method == "hmatrix_rank":
        hk = {k: v for k, v in opts.items() if k != "rank"}
        if budget is not None:
            if "rank" in opts:
                raise ValueError("hmatrix_rank: give budget= or rank=, not both")
            mod = _hmatrix_rank_to_budget(linear, budget, hk)
        else:
            if "rank" not in opts:
                raise ValueError("hmatrix_rank without a budget needs rank=")
            mod = HLinear.from_linear(linear, rank=opts["rank"], **hk)
        info.update(rank=mod.info.get("rank"), n_blocks=mod.n_blocks)
    elif method in ("svd", "svd_int8"):
        cls = LowRankLinear if method == "svd" else LowRankInt8Linear
        per_rank = (m + n) * item if method == "svd" else LowRankInt8Linear.stored_nbytes(m, n, 1)
        if budget is not None:
            k = (budget - bias_b) // per_rank
            if k < 1:
                raise ValueError(f"budget {budget} B is below rank 1 ({per_rank + bias_b} B)")
        else:
            if "rank" not in opts:
                raise ValueError(f"{method} without a budget needs rank=")
            k = opts["rank"]
        k = int(min(k, min(m, n)))
        mod = cls.from_linear(linear, k)
        info["rank"] = k
    elif method == "prune":
        if budget is not None:
            nnz = (budget - bias_b - (m + 1) * _INDEX_BYTES) // (item + _INDEX_BYTES)
            if nnz < 0:
                raise ValueError(f"budget {budget} B is below an empty CSR matrix")
            nnz = int(min(nnz, m * n))
        else:
            amount = opts.get("amount")
            if amount is None or not 0.0 <= amount <= 1.0:
                raise ValueError(f"prune without a budget needs amount= in [0, 1], got {amount!r}")
            nnz = m * n - int(round(amount * m * n))
        mod = copy.deepcopy(linear)
        prune.l1_unstructured(mod, "weight", amount=int(m * n - nnz))
        info["nnz"] = nnz
        info["density"] = nnz / (m * n)
    else:  # int8 / quant
        per_channel = opts.get("per_channel", True)
        scales_b = 4 * (m if per_channel else 1)

        def size(bits):
            return math.ceil(m * n * bits / 8) + scales_b + bias_b

        if method == "int8":
            bits = 8
            if budget is not None and size(8) > budget:
                raise ValueError(f"budget {budget} B is below int8 storage ({size(8)} B); "
                                 "use method='quant' for fewer bits")
        elif budget is not None:
            fits = [b for b in range(8, 1, -1) if size(b) <= budget]
            if not fits:
                raise ValueError(f"budget {budget} B is below 2-bit storage ({size(2)} B)")
            bits = fits[0]
        else:
            bits = opts.get("bits", 8)
        mod = QuantLinear.from_linear(linear, bits=bits, per_channel=per_channel)
        info["bits"] = bits
    with torch.no_grad():
        we = effective_weight(mod).detach().to(torch.float64)
        w64 = w.to(torch.float64)
        info["rel_weight_error"] = float(torch.linalg.norm(we - w64) / torch.linalg.norm(w64))
    info["nbytes"] = layer_nbytes(mod)
    info["n_params"] = layer_n_params(mod)
    if budget is not None and info["nbytes"] > budget:  # a bug, never expected
        raise RuntimeError(f"{method} stored {info['nbytes']} B over the budget {budget} B")
    return mod, info


def compress_network(model: nn.Module, method: str, fraction: float, predicate=None, *,
                     names=None, **opts):
    """Copy ``model`` and compress its selected ``nn.Linear`` layers, each to at most
    ``fraction`` of its dense bytes. Returns ``(new_model, {name: info})``.

    ``predicate(name, layer)`` / ``names`` select the layers as in :func:`replace_linear`
    (default: every ``nn.Linear``). ``method="dense"`` returns an unchanged copy.
    """
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    new = deepcopy_model(model)
    infos = {}
    if method == "dense":
        return new, infos

    def factory(layer):
        mod, info = compress_layer(layer, method, int(fraction * dense_layer_nbytes(layer)),
                                   **opts)
        infos[id(mod)] = info
        return mod

    replaced = replace_linear(new, predicate, names=names, factory=factory)
    return new, {name: infos[id(mod)] for name, (_, mod) in replaced.items()}


def _compressed_layers(model):
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (HLinear, LowRankLinear, QuantLinear)) or _is_pruned(m)]


def deepcopy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works for pruned layers (whose ``weight`` attribute is a
    non-leaf tensor, recomputed by the pruning hook before every forward anyway)."""
    for _, mod in model.named_modules():
        if _is_pruned(mod):
            with torch.no_grad():
                mod.weight = mod.weight_orig * mod.weight_mask
    return copy.deepcopy(model)


def densify(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose compressed layers are plain ``nn.Linear`` with the effective
    (compressed) weight: the dense parameterization at the compressed weights, e.g. for the NTK."""
    new = deepcopy_model(model)
    for name, mod in _compressed_layers(new):
        with torch.no_grad():
            w = effective_weight(mod).detach().clone()
        lin = nn.Linear(w.shape[1], w.shape[0], bias=mod.bias is not None, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if mod.bias is not None:
                lin.bias.copy_(mod.bias.detach())
        new.set_submodule(name, lin)
    return new


def model_nbytes(model: nn.Module, itemsize: int | None = None) -> int:
    """Bytes of a whole network: :func:`layer_nbytes` for linear (and compressed) layers, plus
    every other parameter at its own size."""
    total, seen = 0, set()
    for _, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, HLinear, LowRankLinear, QuantLinear)):
            total += layer_nbytes(mod)
            seen.update(id(p) for p in mod.parameters())
    for p in model.parameters():
        if id(p) not in seen:
            total += p.numel() * (itemsize or p.element_size())
    return int(total)


def model_n_params(model: nn.Module) -> int:
    """Stored numbers of a whole network (:func:`layer_n_params` for linear layers)."""
    total, seen = 0, set()
    for _, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, HLinear, LowRankLinear, QuantLinear)):
            total += layer_n_params(mod)
            seen.update(id(p) for p in mod.parameters())
    return int(total + sum(p.numel() for p in model.parameters() if id(p) not in seen))


def dynamic_int8(model: nn.Module, names=None) -> nn.Module:
    """A copy of ``model`` with (selected) ``nn.Linear`` layers as real int8 dynamic-quantized
    layers (``torch.ao.quantization.quantize_dynamic``): CPU inference timing only, no autograd."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    spec = {nn.Linear} if names is None else set(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(deepcopy_model(model).eval(), spec, dtype=torch.qint8)
