"""Part II experiment helpers: compress a trained PINN's hidden layers by each method at matched
memory, measure errors before and after fine-tuning, time inference, and compare NTKs.

Memory is the common measure of :mod:`hmat.nn.baselines` (bytes that would be stored), summed
over the compressed (square hidden) layers and compared with the same layers stored dense.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import torch
from torch import nn
from tqdm import tqdm

from hmat.nn import (
    HLinear,
    LowRankLinear,
    QuantLinear,
    compress_network,
    deepcopy_model,
    densify,
    layer_nbytes,
    model_n_params,
    model_nbytes,
    replace_linear,
)
from hmat.nn.ntk import pinn_ntk, relative_change, spectrum

from . import pinn

__all__ = ["STYLE", "LABELS", "compress_hidden", "hidden_memory", "compare_methods", "CSRLinear",
           "deployable", "time_inference", "ntk_of", "ntk_comparison", "finetune_with_ntk",
           "aggregate_error"]

# one look per method in every Part II plot; the adaptive H-matrix is drawn with large open
# markers so that it stays visible when it coincides with the global SVD
STYLE = {"hmatrix": dict(color="tab:blue", marker="o", ms=9, mfc="none", lw=2.5),
         "hmatrix_rank": dict(color="tab:orange", marker="P", ms=6),
         "svd": dict(color="tab:green", marker="s", ms=4, lw=1),
         "prune": dict(color="tab:red", marker="^", ms=6),
         "quant": dict(color="tab:purple", marker="D", ms=5),
         "int8": dict(color="tab:purple", marker="D", ms=5)}
LABELS = {"dense": "dense", "hmatrix": "H-matrix (adaptive)", "hmatrix_rank": "H-matrix (rank)",
          "svd": "global SVD", "prune": "pruning", "quant": "quantization", "int8": "int8"}


def compress_hidden(model: pinn.MLP, method: str, fraction: float, **opts):
    """Copy of ``model`` with its square hidden layers compressed to ``fraction`` of their dense
    bytes each; returns ``(model, infos)`` (see :func:`hmat.nn.compress_network`; each info also
    holds ``weight_norm2``, the squared Frobenius norm of the original weight)."""
    new, infos = compress_network(model, method, fraction, pinn.MLP.is_hidden, **opts)
    _weight_norms(model, infos)
    return new, infos


def _dense_equiv_nbytes(layer) -> int:
    """Bytes of the dense nn.Linear that a (compressed) layer stands for."""
    item = next(layer.parameters()).element_size()
    bias = 0 if layer.bias is None else layer.out_features
    return (layer.out_features * layer.in_features + bias) * item


def hidden_memory(model: pinn.MLP) -> dict:
    """Bytes of the square hidden layers (common measure) and of the same layers dense."""
    layers = [model.get_submodule(n) for n in model.hidden_names]
    stored = sum(layer_nbytes(m) for m in layers)
    dense = sum(_dense_equiv_nbytes(m) for m in layers)
    return {"hidden_nbytes": stored, "hidden_dense_nbytes": dense,
            "memory_fraction": stored / dense}


def aggregate_error(infos: dict) -> float:
    """Relative Frobenius weight error over all compressed layers together."""
    num = den = 0.0
    for info in infos.values():
        # rel_weight_error is relative to each layer's own norm; weight them by dense size
        num += info["rel_weight_error"] ** 2 * info.get("weight_norm2", 1.0)
        den += info.get("weight_norm2", 1.0)
    return math.sqrt(num / den) if den else float("nan")


def _weight_norms(model, infos):
    for name, info in infos.items():
        w = model.get_submodule(name).weight.detach().double()
        info["weight_norm2"] = float((w * w).sum())


def compare_methods(model: pinn.MLP, problem, data: pinn.PinnData, *, methods, fractions,
                    n_test: int, finetune_epochs: int = 0, finetune_lr: float = 1e-4,
                    opts: dict | None = None, progress: bool = True) -> tuple[list, dict]:
    """Every method at every memory fraction: weight error, PINN errors on training and unseen
    points, optionally again after ``finetune_epochs`` of Adam. Returns ``(rows, models)`` with
    the compressed (not fine-tuned) models keyed by ``(method, fraction)``.

    A method that cannot reach a fraction (e.g. int8 below ~26 %) gives a row with
    ``reachable=False`` and the reason."""
    opts = opts or {}
    dense_err = pinn.errors(model, problem, data, n_test)
    rows = [{"method": "dense", "fraction": 1.0, "reachable": True, "memory_fraction": 1.0,
             "rel_weight_error": 0.0, "model_nbytes": model_nbytes(model),
             "n_params": model_n_params(model), **dense_err}]
    models = {}
    jobs = [(f, m) for f in fractions for m in methods]
    for fraction, method in tqdm(jobs, desc="compress", disable=not progress):
        try:
            comp, infos = compress_hidden(model, method, fraction, **opts.get(method, {}))
        except ValueError as exc:
            rows.append({"method": method, "fraction": fraction, "reachable": False,
                         "reason": str(exc)})
            continue
        row = {"method": method, "fraction": fraction, "reachable": True,
               **hidden_memory(comp), "rel_weight_error": aggregate_error(infos),
               "model_nbytes": model_nbytes(comp), "n_params": model_n_params(comp),
               "knob": _knob(method, infos),
               "max_blocks": max((i.get("n_blocks", 0) for i in infos.values()), default=0),
               **pinn.errors(comp, problem, data, n_test)}
        if finetune_epochs:
            ft = deepcopy_model(comp)
            res = pinn.train(ft, problem, data, finetune_epochs, lr=finetune_lr, lr_decay=1.0,
                             progress=False)
            e = pinn.errors(ft, problem, data, n_test)
            row.update(ft_train_error=e["train_error"], ft_test_error=e["test_error"],
                       ft_seconds=res.seconds)
        rows.append(row)
        models[(method, fraction)] = comp
    return rows, models


def _knob(method, infos):
    vals = list(infos.values())
    if method == "hmatrix":
        return "tol " + "/".join(f"{v['tol']:.3g}" for v in vals)
    if method in ("svd", "hmatrix_rank"):
        return "rank " + "/".join(str(v["rank"]) for v in vals)
    if method == "prune":
        return "density " + "/".join(f"{v['density']:.2f}" for v in vals)
    if method in ("quant", "int8"):
        return "bits " + "/".join(str(v["bits"]) for v in vals)
    return ""


# ------------------------------------------------------------------------------ inference
class CSRLinear(nn.Module):
    """Inference-only linear layer with a CSR sparse weight (what a pruned layer would deploy)."""

    def __init__(self, weight: torch.Tensor, bias=None):
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = weight.detach().to_sparse_csr()
        self.bias = None if bias is None else bias.detach().clone()

    def forward(self, x):
        lead = x.shape[:-1]
        y = torch.sparse.mm(self.weight, x.reshape(-1, x.shape[-1]).T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, -1)


def deployable(model: nn.Module) -> tuple[nn.Module, str]:
    """The model as it would run for inference on CPU: H-matrix layers with the numba kernels,
    low-rank as two products, pruned layers as CSR, 8-bit layers as real int8 dynamic-quantized
    layers (``torch.ao.quantization.quantize_dynamic``, per-channel); fewer bits have no CPU
    kernel and run dequantized in float. Returns ``(model, note)``."""
    new = deepcopy_model(model).eval()
    notes = set()
    if replace_linear(new, lambda _, mod: hasattr(mod, "weight_mask"),
                      factory=lambda mod: CSRLinear(mod.weight_orig * mod.weight_mask, mod.bias)):
        notes.add("pruned layers as torch CSR")
    int8_names = []
    for name, mod in list(new.named_modules()):
        if isinstance(mod, QuantLinear):  # not an nn.Linear, so not for replace_linear
            lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(mod.weight if mod.bits == 8 else mod.dense_weight())
                if mod.bias is not None:
                    lin.bias.copy_(mod.bias)
            new.set_submodule(name, lin)
            if mod.bits == 8:
                int8_names.append(name)
                notes.add("int8 layers by quantize_dynamic")
            else:
                notes.add(f"{mod.bits}-bit layers dequantized (no CPU kernel)")
        elif isinstance(mod, HLinear):
            notes.add("H-matrix layers by the numba kernels")
        elif isinstance(mod, LowRankLinear):
            notes.add("low-rank layers as two torch products")
    if int8_names:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            new = quantize_dynamic(new, {n: per_channel_dynamic_qconfig for n in int8_names},
                                   dtype=torch.qint8)
    return new, "; ".join(sorted(notes)) or "dense torch"


def time_inference(models: dict, X: torch.Tensor, repeats: int = 20, rounds: int = 5) -> dict:
    """Median wall time (s) of one forward pass ``model(X)`` (eval, no_grad) for each model;
    models alternate round by round so that machine drift hits all alike."""
    if repeats < 1 or rounds < 1:
        raise ValueError("repeats and rounds must be >= 1")
    times = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m.eval()
            m(X)  # warm-up (numba compilation, caches)
        for r in range(rounds):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for k in order:
                m = models[k]
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    m(X)
                    times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------ NTK
def ntk_of(model: nn.Module, problem, X_u: torch.Tensor, X_r: torch.Tensor,
           dense_parameterization: bool = True) -> dict:
    """PINN NTK blocks in float64. ``dense_parameterization``: w.r.t. the dense weights at the
    model's (compressed) weights (:func:`hmat.nn.densify`); else w.r.t. the model's own
    parameters (factors, masked or quantized weights), which drive its fine-tuning."""
    m = densify(model) if dense_parameterization else deepcopy_model(model)
    m = m.double()
    return pinn_ntk(m, X_u.double(), X_r.double(), problem.residual)


def ntk_comparison(dense_model, models: dict, problem, X_u, X_r, progress: bool = True):
    """NTK (dense parameterization) of the dense model and of each compressed model; relative
    change of K, K_uu, K_rr and the spectra. Returns ``(rows, spectra)``."""
    K0 = ntk_of(dense_model, problem, X_u, X_r)
    spectra = {("dense", 1.0): {k: spectrum(v).numpy() for k, v in K0.items() if k != "K_ur"}}
    rows = []
    for key, m in tqdm(models.items(), desc="NTK", disable=not progress):
        K = ntk_of(m, problem, X_u, X_r)
        spectra[key] = {k: spectrum(v).numpy() for k, v in K.items() if k != "K_ur"}
        rows.append({"method": key[0], "fraction": key[1],
                     **{f"ntk_change_{k}": relative_change(K[k], K0[k])
                        for k in ("K", "K_uu", "K_rr")}})
    return rows, spectra, K0


def finetune_with_ntk(model, problem, data, epochs: int, lr: float, every: int, X_u, X_r,
                      K_dense: dict | None = None, progress: bool = False) -> dict:
    """Fine-tune a copy of a compressed model, recording the loss and, every ``every`` steps,
    the NTK drift w.r.t. its own parameters (relative to the start of fine-tuning) and the
    distance of its dense-parameterization NTK to the dense network's ``K_dense``."""
    m = deepcopy_model(model)
    rec = {"step": [], "drift_own": [], "to_dense": []}
    K_start = {}

    def cb(net, step):
        K_own = ntk_of(net, problem, X_u, X_r, dense_parameterization=False)["K"]
        if not K_start:
            K_start["K"] = K_own
        rec["step"].append(step)
        rec["drift_own"].append(relative_change(K_own, K_start["K"]))
        if K_dense is not None:
            rec["to_dense"].append(relative_change(ntk_of(net, problem, X_u, X_r)["K"],
                                                   K_dense["K"]))

    res = pinn.train(m, problem, data, epochs, lr=lr, lr_decay=1.0, progress=progress,
                     desc="fine-tune", callback=cb, callback_every=every)
    rec["losses"] = res.losses
    rec["seconds"] = res.seconds
    rec["model"] = m
    return rec

