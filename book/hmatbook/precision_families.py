"""Part II, "Low rank and low precision together": every compression method at matched memory on
several network families, and the verdicts of the companion's own claims C-prec-error,
C-prec-ntk and C-prec-speed.

A *family* is a trained network, the ``nn.Linear`` layers that are compressed and a task metric.
Memory is the common measure of :mod:`hmat.nn.baselines` (bytes that would be stored, scales,
indices and bias included), summed over the compressed layers and compared with the same layers
stored dense in float32. Each method stores at most ``fraction`` of every compressed layer's
dense bytes, except int8, which has one size (about 25 %): it is one point, compared at the
level nearest to its memory, where the others store no more than it does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import hmat
from hmat.nn import (
    HLinear,
    compress_layer,
    deepcopy_model,
    dense_layer_nbytes,
    layer_nbytes,
    replace_linear,
)

__all__ = ["METHODS", "LABELS", "STYLE_KEYS", "Family", "hprec_to_budget", "compress_one",
           "compress_model", "memory", "sweep", "int8_level", "paired_error_difference",
           "paired_ratio", "cached_model", "verdict_error", "verdict_ntk", "verdict_speed",
           "linear_family",
           "ntk_change"]

#: the methods of the page, in the order of the tables
METHODS = ("int8", "svd", "svd_int8", "prune", "hmatrix", "hmatrix_prec")
LABELS = {"dense": "dense", "int8": "int8 per-channel", "svd": "SVD (float32)",
          "svd_int8": "SVD + int8", "prune": "pruning", "hmatrix": "H (float32)",
          "hmatrix_prec": "H (adaptive precision)"}
#: names of :func:`hmatbook.style.method_style` (same colour as on the other Part II pages)
STYLE_KEYS = {"dense": "dense", "int8": "quant", "svd": "global_svd", "svd_int8": "svd_int8",
              "prune": "prune", "hmatrix": "hmatrix", "hmatrix_prec": "hmatrix_prec"}
ATTACH_SLACK = 0.05  # int8 joins a level when its memory fraction is within this of it


@dataclass
class Family:
    """A trained network and how it is scored.

    ``evaluate(model)`` returns a dict with ``error`` (the task error, lower is better) and
    optionally ``wrong`` (per-sample 0/1 errors, for paired intervals) and other metrics;
    ``predicate(name, layer)`` selects the compressed ``nn.Linear`` layers. ``ntk(model)``
    (PINNs only) returns the NTK blocks at the model's weights (dense parameterization).
    """

    name: str
    label: str
    model: nn.Module
    predicate: Callable
    evaluate: Callable
    error_label: str
    log_error: bool = True
    ntk: Callable | None = None
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ compression
def hprec_to_budget(linear: nn.Linear, budget: int, *, tol_lo: float = 1e-3,
                    iters: int = 10, leaf_size: int = 32) -> tuple[HLinear, dict]:
    """The most accurate adaptive-precision H-matrix layer with ``nbytes <= budget``: bisection
    (in log scale, ``iters`` builds between ``tol_lo`` and 0.999) of the global tolerance of
    ``hmat.compress(W, tol, adaptive=True, precision="adaptive")``, whose certified bound counts
    truncation and rounding. Raises ValueError when even tolerance 0.999 does not fit."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise ValueError(f"budget must be a positive number of bytes (int), got {budget!r}")
    if not 0.0 < tol_lo < 0.999:
        raise ValueError(f"tol_lo must lie in (0, 0.999), got {tol_lo!r}")
    w = linear.weight.detach().cpu().numpy()

    def build(tol):
        H = hmat.compress(w, tol=tol, adaptive=True, precision="adaptive", leaf_size=leaf_size)
        return HLinear(H, linear.bias)

    best, tol_best = build(0.999), 0.999
    if best.nbytes > budget:
        raise ValueError(f"budget {budget} B is below the smallest adaptive-precision "
                         "H-matrix of this layer (tolerance 0.999)")
    lo, hi = math.log(tol_lo), math.log(0.999)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cand = build(math.exp(mid))
        if cand.nbytes <= budget:
            best, tol_best, hi = cand, math.exp(mid), mid
        else:
            lo = mid
    return best, {"tol": tol_best, "certified_bound": tol_best}


def compress_one(linear: nn.Linear, method: str, budget: int | None, *,
                 iters: int = 10) -> tuple[nn.Module, dict]:
    """One layer by ``method`` within ``budget`` bytes: :func:`hmat.nn.compress_layer` for the
    library's methods, :func:`hprec_to_budget` for ``"hmatrix_prec"``; int8 has one size and
    ignores the budget; ``iters``: builds of the bisection. Returns ``(module, info)`` with
    ``nbytes``, ``dense_nbytes``, ``rel_weight_error``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "int8":
        return compress_layer(linear, "int8")
    if method != "hmatrix_prec":
        return compress_layer(linear, method, budget)
    mod, info = hprec_to_budget(linear, budget, iters=iters)
    w = linear.weight.detach().double()
    with torch.no_grad():
        we = mod.dense_weight().detach().double()
    info.update(method=method, budget=budget, dense_nbytes=dense_layer_nbytes(linear),
                nbytes=int(mod.nbytes), n_blocks=mod.n_blocks,
                rel_weight_error=float(torch.linalg.norm(we - w) / torch.linalg.norm(w)))
    return mod, info


def compress_model(model: nn.Module, predicate, method: str, fraction: float | None, *,
                   iters: int = 10):
    """A copy of ``model`` whose selected layers are compressed to ``fraction`` of their dense
    bytes each (None: int8, which has one size). Returns ``(model, {name: info})``."""
    if method != "int8" and (fraction is None or not 0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    new = deepcopy_model(model)
    infos = {}

    def factory(layer):
        budget = None if method == "int8" else int(fraction * dense_layer_nbytes(layer))
        mod, info = compress_one(layer, method, budget, iters=iters)
        infos[id(mod)] = info
        return mod

    replaced = replace_linear(new, predicate, factory=factory)
    if not replaced:
        raise ValueError("predicate selected no nn.Linear layer of the model")
    return new, {name: infos[id(mod)] for name, (_, mod) in replaced.items()}


def memory(model: nn.Module, infos: dict) -> dict:
    """Stored bytes of the compressed layers, the same layers dense, their ratio, and the
    relative Frobenius weight error over all of them together."""
    stored = sum(layer_nbytes(model.get_submodule(n)) for n in infos)
    dense = sum(i["dense_nbytes"] for i in infos.values())
    num = den = 0.0
    for i in infos.values():
        num += i["rel_weight_error"] ** 2 * i["weight_norm2"]
        den += i["weight_norm2"]
    return {"nbytes": int(stored), "dense_nbytes": int(dense), "memory_fraction": stored / dense,
            "rel_weight_error": math.sqrt(num / den) if den else float("nan")}


def int8_level(memory_fraction: float, levels) -> float | None:
    """The level that int8's single size is compared at: the nearest of ``levels`` within
    :data:`ATTACH_SLACK` (None if there is none)."""
    near = [f for f in levels if abs(f - memory_fraction) <= ATTACH_SLACK]
    return min(near, key=lambda f: abs(f - memory_fraction)) if near else None


def sweep(family: Family, methods, fractions, *, ntk_levels=(), iters: int = 10,
          keep_levels=(), progress: bool = True):
    """Every method at every memory level on one family. Returns ``(rows, wrong)``: one dict per
    (method, level) with the measured memory, weight error, task error (and the family's other
    metrics; the NTK change at the levels in ``ntk_levels``), and the per-sample errors by
    (method, level) where the family has them. A method that cannot reach a level gives
    ``reachable=False`` and why. ``iters``: bisection builds of the adaptive-precision H.
    The compressed models at ``keep_levels`` stay in ``family.notes["models"][(method, level)]``
    (e.g. to time them without compressing again)."""
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: {m!r} is not one of {METHODS}")
    fractions = sorted(set(float(f) for f in fractions), reverse=True)
    base = family.evaluate(family.model)
    wrong = {("dense", 1.0): base.get("wrong")}
    K0 = family.ntk(family.model) if ntk_levels and family.ntk else None
    rows = [{"family": family.name, "method": "dense", "level": 1.0, "reachable": True,
             "memory_fraction": 1.0, "rel_weight_error": 0.0,
             **{k: v for k, v in base.items() if k != "wrong"},
             **({"ntk_change": 0.0} if K0 is not None else {})}]
    norms = {n: float((mod.weight.detach().double() ** 2).sum())
             for n, mod in family.model.named_modules()
             if isinstance(mod, nn.Linear) and family.predicate(n, mod)}
    jobs = [(m, None) for m in methods if m == "int8"]
    jobs += [(m, f) for f in fractions for m in methods if m != "int8"]
    for method, f in tqdm(jobs, desc=f"{family.name}: compress", disable=not progress):
        try:
            comp, infos = compress_model(family.model, family.predicate, method, f, iters=iters)
        except ValueError as exc:
            rows.append({"family": family.name, "method": method, "level": f,
                         "reachable": False, "reason": str(exc)})
            continue
        for n, i in infos.items():
            i["weight_norm2"] = norms[n]
        mem = memory(comp, infos)
        level = f if method != "int8" else int8_level(mem["memory_fraction"], fractions)
        res = family.evaluate(comp)
        row = {"family": family.name, "method": method, "level": level, "reachable": True,
               "memory_fraction": mem["memory_fraction"],
               "rel_weight_error": mem["rel_weight_error"], "nbytes": mem["nbytes"],
               **{k: v for k, v in res.items() if k != "wrong"}}
        if method == "hmatrix_prec":
            row["max_blocks"] = max(i.get("n_blocks", 0) for i in infos.values())
        if K0 is not None and level in ntk_levels:
            K = family.ntk(comp)
            row["ntk_change"] = ntk_change(K, K0)
        rows.append(row)
        wrong[(method, level)] = res.get("wrong")
        if level in keep_levels:
            family.notes.setdefault("models", {})[(method, level)] = comp
    return rows, wrong


def ntk_change(K: dict, K0: dict) -> float:
    """Relative Frobenius change of the full NTK ``||K - K0||_F / ||K0||_F``."""
    from hmat.nn.ntk import relative_change

    return float(relative_change(K["K"], K0["K"]))


# ------------------------------------------------------------------------------ families
def cached_model(kind: str, config: dict, make: Callable, train: Callable,
                 cache: bool = True) -> tuple[nn.Module, dict]:
    """``make()`` a network and ``train(model) -> info`` it, or load both from the cache of
    trained networks (:func:`hmatbook.pinn.cache_dir`) under a key of ``kind``, ``config`` and
    the torch version, so that a rerun (or the full book build) trains it once."""
    import hashlib
    import json

    from .pinn import cache_dir

    doc = {"kind": kind, "config": config, "torch": torch.__version__}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    model = make()
    path = cache_dir() / f"{kind}-{key}.pt" if cache else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["state"])
        return model.eval(), {**saved["info"], "cached": True}
    info = dict(train(model))
    info.pop("model", None)
    if path is not None:
        torch.save({"state": model.state_dict(), "info": info}, path)
    return model.eval(), {**info, "cached": False}


def linear_family(name: str, label: str, W: np.ndarray, b: np.ndarray, features: np.ndarray,
                  labels: np.ndarray, error_label: str = "top-1 loss [points]") -> Family:
    """A classifier's last layer as a family: ``features @ W.T + b`` over cached features; the
    error is the top-1 loss against the dense layer in points (per image: wrong or right)."""
    W = np.asarray(W, dtype=np.float32)
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))
    model = nn.Sequential(lin).eval()
    X = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels)).long()
    dense_acc = {}

    def evaluate(m):
        with torch.no_grad():
            pred = m(X).argmax(1)
        wrong = (pred != y).numpy().astype(np.float64)
        top1 = 100.0 * (1.0 - wrong.mean())
        dense_acc.setdefault("top1", top1)  # the first call is the dense layer (sweep)
        return {"error": dense_acc["top1"] - top1, "top1": top1, "wrong": wrong}

    return Family(name, label, model, lambda n, mod: True, evaluate, error_label,
                  log_error=False)


# ------------------------------------------------------------------------------ statistics
def paired_error_difference(wrong_a, wrong_b, level: float = 0.95):
    """Error of A minus error of B over the same samples, in points, with a paired ``level``
    interval (Wald, difference of paired proportions): ``(diff, lo, hi)``."""
    from .imagenet import paired_difference

    a = np.asarray(wrong_a, dtype=bool)
    b = np.asarray(wrong_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"wrong_a and wrong_b must be equal-length vectors, got {a.shape} "
                         f"and {b.shape}")
    # error(A) - error(B) = top-1(B) - top-1(A): B is right where only A is wrong
    return paired_difference(int(np.sum(a & ~b)), int(np.sum(b & ~a)), int(a.size), level)


def paired_ratio(op_a, op_b, x, *, n: int = 200, rounds: int = 15, warmup: int = 20):
    """Per-round time ratios ``t(op_a @ x) / t(op_b @ x)`` of ``n`` products each, the two
    alternating first within a round, same ``x``, default threads."""
    for arg, v in (("n", n), ("rounds", rounds)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{arg} must be a positive integer, got {v!r}")

    def loop(op):
        t0 = time.perf_counter()
        for _ in range(n):
            op @ x
        return time.perf_counter() - t0

    for _ in range(warmup):
        op_a @ x
        op_b @ x
    ratios = []
    for r in range(rounds):
        if r % 2 == 0:
            ta, tb = loop(op_a), loop(op_b)
        else:
            tb, ta = loop(op_b), loop(op_a)
        ratios.append(ta / tb)
    return np.asarray(ratios)


# ------------------------------------------------------------------------------ verdicts
def verdict_error(per_family: list[dict]):
    """C-prec-error. ``per_family``: dicts with family, h_error, int8_error, h_memory,
    int8_memory and optionally interval (lo, hi) of h_error - int8_error. H-adaptive counts
    as lower where the interval lies below the threshold of claims.yml (0) (or, without
    interval, the difference of the errors does), higher where it lies above it."""
    from .ledger import Verdict, threshold

    thr = threshold("C-prec-error", "error_difference")
    if not per_family:
        return Verdict("not testable here", "no family compared H-adaptive with int8")
    lower = higher = 0
    parts = []
    for r in per_family:
        if r["h_memory"] > r["int8_memory"] * (1 + 1e-9):
            raise ValueError(f"{r['family']}: H-adaptive stores more than int8 "
                             f"({r['h_memory']:.4f} > {r['int8_memory']:.4f})")
        iv = r.get("interval")
        if iv is not None:
            is_lower, is_higher = iv[1] < thr, iv[0] > thr
            how = (f"difference {r['h_error'] - r['int8_error']:+.3g} points, 95 % "
                   f"[{iv[0]:+.3g}, {iv[1]:+.3g}]")
        else:
            d = r["h_error"] - r["int8_error"]
            is_lower, is_higher = d < thr, d > thr
            how = f"ratio {r['h_error'] / r['int8_error']:.3g}x" if r["int8_error"] else ""
        lower += is_lower
        higher += is_higher
        parts.append(f"{r['family']}: H-adaptive {r['h_error']:.3g} at "
                     f"{100 * r['h_memory']:.1f} % vs int8 {r['int8_error']:.3g} at "
                     f"{100 * r['int8_memory']:.1f} % ({how}; "
                     + ("lower" if is_lower else "higher" if is_higher else "not separated")
                     + ")")
    n = len(per_family)
    verdict = ("not reproduced" if higher else "reproduced" if lower == n else "inconclusive")
    return Verdict(verdict, f"H-adaptive lower on {lower}, higher on {higher} of {n} families: "
                   + "; ".join(parts))


def verdict_ntk(per_family: list[dict]):
    """C-prec-ntk: the NTK change below the threshold of claims.yml (5 %) on every family.
    ``per_family``: dicts with family, ntk_change, memory_fraction (of H-adaptive, <= 25 %)."""
    from . import ledger
    from .ledger import Verdict

    threshold = ledger.threshold("C-prec-ntk", "ntk_change")
    if not per_family:
        return Verdict("not testable here", "no PINN family measured the NTK of H-adaptive")
    ok = [r["ntk_change"] < threshold for r in per_family]
    text = "; ".join(f"{r['family']}: NTK change {100 * r['ntk_change']:.3g} % at "
                     f"{100 * r['memory_fraction']:.1f} % memory" for r in per_family)
    return Verdict("reproduced" if all(ok) else "not reproduced",
                   text + f" (criterion: below {100 * threshold:g} % on every PINN family)",
                   value=max(r["ntk_change"] for r in per_family))


def verdict_speed(ratios, bytes_ratio: float, what: str = ""):
    """C-prec-speed: the median time ratio's 95 % interval against the factor of claims.yml
    (1.25) x the bytes ratio (ledger.decide: reproduced at or below, not reproduced above,
    else inconclusive)."""
    from .ledger import Verdict, decide, threshold
    from .timing import median_interval

    factor = threshold("C-prec-speed", "time_ratio")
    med, lo, hi = median_interval(ratios)
    bound = factor * bytes_ratio
    verdict = decide((lo, hi), "<=", bound)
    return Verdict(verdict, f"{what}time ratio t(H-adaptive)/t(H float32) {med:.3g} (95 % "
                   f"[{lo:.3g}, {hi:.3g}], {len(ratios)} paired rounds) against bytes ratio "
                   f"{bytes_ratio:.3g} (criterion: at or below {factor:g} x = {bound:.3g})",
                   value=med, interval=(lo, hi))
