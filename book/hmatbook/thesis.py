"""Part I of the book: the thesis' experiments on the last layer of an ImageNet classifier.

* :func:`prepare_layer` loads a model, its cached penultimate features and its last layer.
* :func:`approximate` builds one variant (H-matrix with fixed rank / tolerance / adaptive /
  data ordering / weak admissibility, or one global truncated SVD); :func:`evaluate` measures
  storage, error, top-1 (one product with the cached features) and, optionally, product time.
* ``verdict_*`` turn measured numbers into claim verdicts with the criteria of
  ``data/claims.yml``; each returns ``(verdict, measured_text)`` for :func:`ledger.record`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from .paths import repo_data

__all__ = [
    "METHOD_LABEL", "thesis_table1", "thesis_model", "Layer", "prepare_layer",
    "first_available_layer", "parse_ranks",
    "GlobalSVD", "GLOBAL_SVD", "family_of", "approximate", "rank_sweep",
    "storage_without_fallback", "evaluate", "variant_label", "pareto_front",
    "interp_at_storage", "verdict_table1", "verdict_abstract_time", "verdict_tradeoff",
    "verdict_model_dependent", "verdict_fig2_order", "verdict_fig2_close", "verdict_fig2_monotone",
    "verdict_fig3_smaller", "verdict_fig3_svd_qr_equal", "verdict_fig3_aca_least",
    "verdict_fig4_order", "verdict_fig4_drop", "verdict_qr_close", "verdict_aca_weak",
    "verdict_suitable", "verdict_accuracy_decreases",
]

METHOD_LABEL = {"svd": "SVD", "rrqr": "QR", "qr": "QR", "aca": "ACA",
                "aca_plain": "ACA, plain cross"}


def compressor(method: str):
    """The ``method=`` handed to :func:`hmat.compress`: hmat's own names, and ``"aca_plain"``,
    the cross approximation without hmat's recompression (as the thesis' ACA curves)."""
    import hmat

    return hmat.ACA(recompress=False) if method == "aca_plain" else method
REPRODUCED, PARTLY, NOT, UNTESTABLE = ("reproduced", "partly reproduced", "not reproduced",
                                       "not testable here")


def thesis_table1() -> list[dict]:
    """The thesis' Table I as read off the text (``data/thesis_table1.csv``)."""
    with open(repo_data("thesis_table1.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["rank"] = int(r["rank"])
        r["time_saving_pct"] = float(r["time_saving_pct"])
        r["accuracy_loss_pct"] = float(r["accuracy_loss_pct"])
    return rows


def thesis_model(name: str) -> str:
    """The thesis' model name for one of ours (it says "ResNet" without the depth)."""
    return "resnet" if name.startswith("resnet") else name


# ------------------------------------------------------------------------------ the layer
@dataclass
class Layer:
    """One last layer with everything needed to score approximations of it."""

    model: str
    label: str  # e.g. "MobileNetV2 (dequantized QNNPACK weights)"
    W: np.ndarray  # (out, in) float32
    b: np.ndarray  # (out,) float32
    features: np.ndarray  # (n_images, in) float32
    labels: np.ndarray  # (n_images,)
    source: object  # imagenet.WeightsSource
    feature_meta: dict

    @property
    def n_images(self) -> int:
        return int(self.labels.shape[0])

    def correct(self, op=None) -> np.ndarray:
        """Per image: is the top-1 prediction with last layer ``op`` (default: dense) right?"""
        from .imagenet import classifier_logits

        logits = classifier_logits(self.W if op is None else op, self.b, self.features)
        return np.argmax(logits, axis=1) == self.labels

    def top1_count(self, op=None) -> int:
        return int(self.correct(op).sum())

    @property
    def dense_correct(self) -> np.ndarray:
        if getattr(self, "_dense_correct", None) is None:
            self._dense_correct = self.correct()
        return self._dense_correct

    @property
    def dense_top1_count(self) -> int:
        return int(self.dense_correct.sum())


def prepare_layer(name: str, *, data_dir=None, image_dir=None, max_images=None,
                  num_workers: int = 0, device: str = "auto", batch_size: int = 50,
                  cache=None, allow_download: bool = False, progress: bool = True,
                  with_features: bool = True) -> Layer:
    """Load ``name`` (raises :class:`imagenet.WeightsUnavailable` when missing), compute or
    reuse its cached features over the val images, and return its last layer. With
    ``with_features=False`` only the weights are loaded (no images needed; for timing and
    storage)."""
    from . import imagenet as im

    model, src = im.load_model(name, data_dir, allow_download=allow_download)
    if not with_features:
        lin = im.last_layer(model)
        W = np.ascontiguousarray(lin.weight.detach().cpu().numpy(), dtype=np.float32)
        b = np.ascontiguousarray(lin.bias.detach().cpu().numpy(), dtype=np.float32)
        return Layer(name, src.label, W, b, None, None, src, {})
    folder = image_dir if image_dir is not None else im.val_folder(data_dir)
    if folder is None:
        raise FileNotFoundError("no ImageNet val folder: pass image_dir or set HMAT_DATA_DIR")
    images = im.ImageNetVal(folder, max_images=max_images)
    feats = im.penultimate_features(model, src, images, cache=cache, batch_size=batch_size,
                                    num_workers=num_workers, device=device, progress=progress)
    lin = im.last_layer(model)
    W = np.ascontiguousarray(lin.weight.detach().cpu().numpy(), dtype=np.float32)
    b = np.ascontiguousarray(lin.bias.detach().cpu().numpy(), dtype=np.float32)
    meta = dict(feats.meta, from_cache=feats.from_cache, cache_path=str(feats.path))
    return Layer(name, src.label, W, b, feats.features, feats.labels, src, meta)


def first_available_layer(names, **kw) -> tuple[Layer | None, list[tuple[str, str]]]:
    """The :class:`Layer` of the first model in ``names`` whose weights can be loaded, and the
    (name, reason) of the models skipped before it; (None, all reasons) if none loads."""
    from .imagenet import WeightsUnavailable

    skipped = []
    for name in dict.fromkeys(names):
        try:
            return prepare_layer(name, **kw), skipped
        except WeightsUnavailable as exc:
            skipped.append((name, str(exc)))
    return None, skipped


def parse_ranks(ranks) -> list[int]:
    """Ranks from a list of integers or a string "a..b" / "a..b:step" (e.g. "1..100")."""
    if isinstance(ranks, str):
        m = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*(?::\s*(\d+))?\s*", ranks)
        if not m:
            raise ValueError(f"ranks must be a list of integers or 'a..b[:step]', got {ranks!r}")
        a, b, step = int(m[1]), int(m[2]), int(m[3] or 1)
        out = list(range(a, b + 1, step))
    else:
        out = [int(r) for r in ranks]
    if not out or min(out) < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks!r}")
    return sorted(set(out))


# ------------------------------------------------------------------------------- variants
class GlobalSVD:
    """One truncated SVD of the whole matrix, ``A ~ U @ Vt`` (the baseline of (c)), computed by
    hmat's own :class:`hmat.TruncatedSVD` on the whole matrix."""

    def __init__(self, A: np.ndarray, rank: int):
        import hmat

        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        a = np.asarray(A, dtype=np.float64)
        lr = hmat.TruncatedSVD()(a, hmat.Accuracy(rank=int(rank)))
        self.shape = a.shape
        self.rank = lr.rank
        self.U = np.ascontiguousarray(lr.u.astype(A.dtype))
        self.Vt = np.ascontiguousarray(lr.vt.astype(A.dtype))
        err = float(np.linalg.norm(a - lr.to_dense()))
        self.info = {"rel_error_fro": err / float(np.linalg.norm(a)), "rank": lr.rank}

    @property
    def nbytes(self) -> int:
        return self.U.nbytes + self.Vt.nbytes

    def __matmul__(self, x):
        return self.U @ (self.Vt @ x)


def variant_label(v: dict) -> str:
    """Short name of a variant dict, e.g. "H SVD r=30", "H adaptive tol=0.5", "global SVD k=12"."""
    fam = v.get("family", "hmatrix")
    if fam == "global_svd":
        return f"global SVD k={v['rank']}"
    parts = ["H", METHOD_LABEL.get(v.get("method", "svd"), v.get("method", "svd"))]
    if v.get("adaptive"):
        parts.append("adaptive")
    if v.get("cluster", "index") != "index":
        parts.append(f"{v['cluster']}-ordered")
    if v.get("admissibility", "strong") != "strong":
        parts.append(v["admissibility"])
    parts.append(f"r={v['rank']}" if v.get("rank") is not None else f"tol={v['tol']:g}")
    return " ".join(parts)


GLOBAL_SVD = "global SVD"


def family_of(v: dict) -> str:
    """The family a variant belongs to, for tables and plot legends."""
    if "family_label" in v:
        return v["family_label"]
    if v.get("family", "hmatrix") == "global_svd":
        return GLOBAL_SVD
    if v.get("adaptive"):
        return "H adaptive (certified tol)"
    if v.get("tol") is not None:
        return "H per-block tol" + (" + recompress" if v.get("recompress") else "")
    if v.get("cluster", "index") != "index":
        return f"H {v['cluster']}-ordered, fixed rank"
    if v.get("admissibility", "strong") != "strong":
        return f"H {v['admissibility']} admissibility, fixed rank"
    return f"H fixed rank ({METHOD_LABEL.get(v.get('method', 'svd'), v.get('method'))})"


_HM_KEYS = ("rank", "tol", "method", "adaptive", "recompress", "norm", "admissibility", "eta",
            "leaf_size", "cluster")


def approximate(W: np.ndarray, v: dict, *, build_threads: int | None = 1):
    """Build the variant described by ``v`` (keys of :func:`hmat.compress`, plus ``family``:
    "hmatrix" (default) or "global_svd" with ``rank``).

    The BLAS runs on ``build_threads`` threads during the build (None: as configured): the
    many small SVDs and QRs of a build are fastest on one thread, and a multi-threaded BLAS on
    a busy machine can be 10-50x slower. The result does not depend on it."""
    import hmat

    fam = v.get("family", "hmatrix")
    if fam not in ("hmatrix", "global_svd"):
        raise ValueError(f"family must be 'hmatrix' or 'global_svd', got {fam!r}")
    unknown = set(v) - set(_HM_KEYS) - {"family", "family_label"}
    if unknown:
        raise ValueError(f"unknown variant keys {sorted(unknown)}; allowed: {_HM_KEYS}")
    with hmat.limit_threads(build_threads):
        if fam == "global_svd":
            return GlobalSVD(W, int(v["rank"]))
        kw = {k: v[k] for k in _HM_KEYS if k in v}
        if "method" in kw:
            kw["method"] = compressor(kw["method"])
        return hmat.compress(W, **kw)


def evaluate(layer: Layer, v: dict, *, n_products: int = 0, threads=None, rounds: int = 20,
             op=None) -> dict:
    """Build (unless ``op`` is given) and score one variant: storage, relative Frobenius error,
    top-1, and with ``n_products > 0`` the timing protocol against the dense matrix
    (``us_h``/``us_dense``: medians over the rounds; ``time_saving_pct``: from the median
    paired ratio, :attr:`TimingResult.time_saving_paired`; ``*_mean`` and
    ``time_saving_total_pct``: from the totals over all N products)."""
    from .timing import time_products

    if op is None:
        op = approximate(layer.W, v)
    dense_bytes = layer.W.nbytes
    row = {
        "variant": variant_label(v), "family": family_of(v),
        "method": v.get("method", "svd"), "rank": v.get("rank"), "tol": v.get("tol"),
        "nbytes": int(op.nbytes), "storage_ratio": op.nbytes / dense_bytes,
        "rel_error_fro": float(op.info.get("rel_error_fro", float("nan"))),
        "max_rank": int(getattr(op, "max_rank", getattr(op, "rank", 0)) or 0),
        "n_lowrank": int(len(op.lr_desc)) if hasattr(op, "lr_desc") else 1,
        "n_dense": int(len(op.d_desc)) if hasattr(op, "d_desc") else 0,
        "build_s": float(op.info.get("build_seconds", float("nan"))),
    }
    if layer.features is not None:
        ok, ok_dense = layer.correct(op), layer.dense_correct
        count, dense_count = int(ok.sum()), int(ok_dense.sum())
        row.update(top1_count=count, top1_pct=100.0 * count / layer.n_images,
                   loss_pts=100.0 * (dense_count - count) / layer.n_images,
                   loss_rel_pct=100.0 * (dense_count - count) / dense_count,
                   # discordant images (McNemar): fixed by the approximation / broken by it
                   fixed=int(np.sum(ok & ~ok_dense)), broken=int(np.sum(~ok & ok_dense)))
    if n_products:
        t = time_products(op, layer.W, n_products, threads=threads, rounds=rounds)
        # per-product times: medians over the alternating rounds; time saving: median of the
        # paired H/dense rounds (robust to a busy machine); the totals over all N products
        # (the thesis' definition) are kept beside them
        row.update(us_h=t.us_h_median, us_dense=t.us_dense_median,
                   time_saving_pct=100.0 * t.time_saving_paired,
                   us_h_mean=t.us_h, us_dense_mean=t.us_dense,
                   time_saving_total_pct=100.0 * t.time_saving,
                   threads=threads, n_products=n_products, rounds=t.rounds)
    return row


def rank_sweep(layer: Layer, methods, ranks, *, n_products: int = 0, threads=None,
               rounds: int = 20, progress: bool = True, **compress_kw) -> list[dict]:
    """The thesis' sweep: one H-matrix per (rank, method) with the same fixed rank in every
    admissible block, scored by :func:`evaluate` (timed when ``n_products > 0``)."""
    from tqdm import tqdm  # text bars: no ipywidgets needed in executed notebooks

    ranks = parse_ranks(ranks)
    for m in methods:
        if m not in METHOD_LABEL:
            raise ValueError(f"methods must be among {sorted(METHOD_LABEL)}, got {m!r}")
    jobs = [(r, m) for r in ranks for m in methods]
    rows = []
    for r, m in tqdm(jobs, desc="rank sweep", disable=not progress):
        row = evaluate(layer, {"method": m, "rank": r, **compress_kw}, n_products=n_products,
                       threads=threads, rounds=rounds)
        row["method"] = "rrqr" if m == "qr" else m
        rows.append(row)
    return rows


def storage_without_fallback(H_rank1, ranks, itemsize: int = 4) -> np.ndarray:
    """Bytes an H-matrix would store at each fixed rank if every admissible block stayed in
    low rank even where ``k (m + n) >= m n`` (no dense fallback), from the block partition of a
    rank-1 build (whose low-rank blocks are exactly the admissible ones). Descriptors are not
    counted, so compare with ``H.nbytes`` only up to a few kilobytes."""
    lr, dn = H_rank1.lr_desc, H_rank1.d_desc
    m, n = lr[:, 1], lr[:, 3]
    dense = int(np.sum(dn[:, 1] * dn[:, 3]))
    out = [dense + int(np.sum(np.minimum(k, np.minimum(m, n)) * (m + n))) for k in ranks]
    return np.asarray(out, dtype=np.int64) * itemsize


def pareto_front(cost, value) -> np.ndarray:
    """Indices of the points not dominated by another (lower or equal cost and higher or equal
    value, one of them strictly), sorted by cost."""
    cost, value = np.asarray(cost, float), np.asarray(value, float)
    order = np.lexsort((-value, cost))
    front, best = [], -np.inf
    for i in order:
        if value[i] > best:
            front.append(i)
            best = value[i]
    return np.asarray(front, dtype=np.int64)


def interp_at_storage(storage, value, at) -> np.ndarray:
    """Linear interpolation of ``value`` against storage at the storage levels ``at`` (nan
    outside the measured range): compares families at equal storage."""
    s, v = np.asarray(storage, float), np.asarray(value, float)
    order = np.argsort(s)
    s, v = s[order], v[order]
    at = np.asarray(at, float)
    out = np.interp(at, s, v)
    out[(at < s[0]) | (at > s[-1])] = np.nan
    return out


# ------------------------------------------------------------------------------- verdicts
def _grade(n_ok: int, n_all: int) -> str:
    return REPRODUCED if n_ok == n_all else (PARTLY if n_ok > 0 else NOT)


def _within_factor2(value: float, ref: float) -> bool:
    return ref > 0 and ref / 2 <= value <= 2 * ref


def verdict_table1(time_saving_pct: float, loss_pts: float, loss_rel_pct: float,
                   thesis_time_pct: float, thesis_loss_pct: float) -> tuple[str, str]:
    """T1-*: time saving within 15 points of the thesis, and accuracy loss within a factor 2 of
    the thesis' value read as points or as relative loss. Both: reproduced; one: partly."""
    time_ok = abs(time_saving_pct - thesis_time_pct) <= 15.0
    loss_ok = (_within_factor2(loss_pts, thesis_loss_pct)
               or _within_factor2(loss_rel_pct, thesis_loss_pct))
    text = (f"time saving {time_saving_pct:.1f} % (thesis {thesis_time_pct:.2f} %, "
            f"{'within' if time_ok else 'not within'} 15 points); accuracy loss "
            f"{loss_pts:.2f} points / {loss_rel_pct:.2f} % relative "
            f"(thesis {thesis_loss_pct:.2f} %, "
            f"{'within' if loss_ok else 'not within'} a factor 2)")
    return _grade(int(time_ok) + int(loss_ok), 2), text


def verdict_abstract_time(savings: dict) -> tuple[str, str]:
    """T-abstract-time: ``savings`` = {model: {rank: time saving %}}; > 5 % everywhere."""
    if not savings:
        return UNTESTABLE, "no model available"
    vals = [(m, r, s) for m, d in savings.items() for r, s in d.items()]
    ok = [s > 5.0 for _, _, s in vals]
    text = "; ".join(f"{m} r={r}: {s:.1f} %" for m, r, s in vals)
    return _grade(sum(ok), len(ok)), f"time saving (criterion > 5 %): {text}"


def verdict_tradeoff(rows: dict) -> tuple[str, str]:
    """T-disc-tradeoff: ``rows`` = {model: {rank: (time saving %, loss points)}}; both decrease
    from rank 30 to 50 to 70 for every model."""
    if not rows:
        return UNTESTABLE, "no model available"
    checks, parts = [], []
    for m, d in rows.items():
        ranks = sorted(d)
        ts = [d[r][0] for r in ranks]
        lo = [d[r][1] for r in ranks]
        ts_dec = all(a > b for a, b in pairwise(ts))
        lo_dec = all(a > b for a, b in pairwise(lo))
        checks += [ts_dec, lo_dec]
        parts.append(f"{m}: time saving {', '.join(f'{t:.1f}' for t in ts)} % "
                     f"({'decreasing' if ts_dec else 'not decreasing'}), loss "
                     f"{', '.join(f'{x:.2f}' for x in lo)} points "
                     f"({'decreasing' if lo_dec else 'not decreasing'}) over ranks {ranks}")
    return _grade(sum(checks), len(checks)), "; ".join(parts)


def verdict_model_dependent(rank30: dict) -> tuple[str, str]:
    """T-disc-model-dependent: ``rank30`` = {model: (time saving %, loss points)}; needs two or
    more models; differs by more than 5 points in either."""
    if len(rank30) < 2:
        return UNTESTABLE, (f"only {len(rank30)} model with weights available "
                            f"({', '.join(rank30) or 'none'}); the claim needs two or more")
    ts = [v[0] for v in rank30.values()]
    lo = [v[1] for v in rank30.values()]
    spread_t, spread_l = max(ts) - min(ts), max(lo) - min(lo)
    ok = spread_t > 5 or spread_l > 5
    return (REPRODUCED if ok else NOT,
            f"at rank 30 the time saving spans {spread_t:.1f} points and the accuracy loss "
            f"{spread_l:.2f} points across {len(rank30)} models")


def _le_tie(a: float, b: float, tie: float = 0.05) -> bool:
    return a <= b * (1.0 + tie)


def verdict_fig2_order(mean_time: dict, what: str = "time per product",
                       fmt: str = "{:.1f} us") -> tuple[str, str]:
    """T-fig2-svd-fastest: mean time over ranks ordered SVD <= QR <= ACA (5 % ties)."""
    s, q, a = mean_time["svd"], mean_time["rrqr"], mean_time["aca"]
    ok = [_le_tie(s, q), _le_tie(q, a)]
    spread = (max(s, q, a) - min(s, q, a)) / min(s, q, a)
    text = (f"mean {what} over the ranks: SVD {fmt.format(s)}, QR {fmt.format(q)}, ACA "
            f"{fmt.format(a)} (spread {100 * spread:.1f} %; ties within 5 % count as equal)")
    if all(ok) and spread <= 0.05:
        # no order at all: SVD is not slower, but "followed by QR and then ACA" is not seen
        return PARTLY, text + "; all three tied, so the claimed order is not observed"
    return _grade(sum(ok), 2), text


def verdict_fig2_close(ranks, times: dict) -> tuple[str, str]:
    """T-fig2-close-below-20: relative spread (max-min)/min of the methods' times, mean over
    ranks <= 20 below 10 % ("close") and mean over ranks > 20 at least 10 % ("they differ")."""
    ranks = np.asarray(ranks)
    t = np.vstack([np.asarray(times[m], float) for m in ("svd", "rrqr", "aca")])
    spread = (t.max(0) - t.min(0)) / t.min(0)
    lo, hi = ranks <= 20, ranks > 20
    if not lo.any() or not hi.any():
        return UNTESTABLE, "the rank sweep needs ranks on both sides of 20"
    s_lo, s_hi = float(spread[lo].mean()), float(spread[hi].mean())
    ok = [s_lo < 0.10, s_hi >= 0.10]
    return _grade(sum(ok), 2), (f"mean spread between methods {100 * s_lo:.1f} % at ranks <= 20, "
                                f"{100 * s_hi:.1f} % at ranks > 20 (criterion: below 10 % up "
                                "to rank 20, at least 10 % above)")


def verdict_fig2_monotone(ranks, times, what: str = "SVD product time") -> tuple[str, str]:
    """T-fig2-lower-rank-faster: Spearman correlation of rank and time (SVD) >= 0.8;
    0.5 to 0.8 counts as partly."""
    from scipy.stats import spearmanr

    rho = float(spearmanr(ranks, times).statistic)
    verdict = REPRODUCED if rho >= 0.8 else (PARTLY if rho >= 0.5 else NOT)
    return verdict, f"Spearman correlation of rank and {what}: {rho:.2f} (criterion >= 0.8)"


def verdict_fig3_smaller(ranks, ratio: dict) -> tuple[str, str]:
    """T-fig3-storage-smaller: storage ratio < 1 at every rank <= 70, SVD and QR."""
    ranks = np.asarray(ranks)
    sel = ranks <= 70
    vals = np.concatenate([np.asarray(ratio[m])[sel] for m in ("svd", "rrqr")])
    ok = bool(np.all(vals < 1.0))
    return (REPRODUCED if ok else NOT,
            f"H storage / dense storage at ranks <= 70 (SVD, QR): {vals.min():.3f} to "
            f"{vals.max():.3f}")


def verdict_fig3_svd_qr_equal(ranks, nbytes: dict) -> tuple[str, str]:
    """T-fig3-svd-qr-equal: storage of SVD and QR differs by < 1 % at every rank."""
    s, q = np.asarray(nbytes["svd"], float), np.asarray(nbytes["rrqr"], float)
    diff = np.abs(s - q) / s
    ok = bool(np.all(diff < 0.01))
    return (REPRODUCED if ok else NOT,
            f"largest relative storage difference SVD vs QR over {len(diff)} ranks: "
            f"{100 * diff.max():.2f} %")


def verdict_fig3_aca_least(ranks, nbytes: dict, dense_bytes: int) -> tuple[str, str]:
    """T-fig3-aca-least: ACA storage >= SVD storage at every rank and more than 1 % larger at
    one rank at least (equal storage is not "least compression"), and ACA storage >= 95 % of
    dense at ranks >= 70. Both: reproduced; one: partly."""
    ranks = np.asarray(ranks)
    s, a = np.asarray(nbytes["svd"], float), np.asarray(nbytes["aca"], float)
    ok1 = bool(np.all(a >= s) and np.any(a > 1.01 * s))
    hi = ranks >= 70
    if not hi.any():
        return UNTESTABLE, "the rank sweep has no rank >= 70"
    ratio_hi = a[hi] / dense_bytes
    ok2 = bool(np.all(ratio_hi >= 0.95))
    rel = ">=" if np.all(a >= s) else "not always >="
    rel = "==" if np.allclose(a, s, rtol=0.01) else rel
    text = (f"ACA storage {rel} SVD storage (largest ACA/SVD "
            f"ratio {np.max(a / s):.3f}); ACA storage at ranks >= 70: "
            f"{100 * ratio_hi.min():.1f} to {100 * ratio_hi.max():.1f} % of dense "
            "(criterion >= 95 %)")
    return _grade(int(ok1) + int(ok2), 2), text


def verdict_fig4_order(mean_acc: dict) -> tuple[str, str]:
    """T-fig4-svd-most-accurate: mean top-1 over ranks ordered SVD >= QR >= ACA."""
    s, q, a = mean_acc["svd"], mean_acc["rrqr"], mean_acc["aca"]
    ok = [s >= q, q >= a]
    return _grade(sum(ok), 2), (f"mean top-1 over the ranks: SVD {s:.2f} %, QR {q:.2f} %, "
                                f"ACA {a:.2f} %")


def verdict_fig4_drop(ranks, loss_pts) -> tuple[str, str]:
    """T-fig4-low-rank-drop: loss at the lowest rank > 10 points and at rank 100 (the highest
    rank measured, when 100 is not in the sweep) < 2 points."""
    ranks = np.asarray(ranks)
    loss = np.asarray(loss_pts, float)
    lo, hi = int(np.argmin(ranks)), int(np.argmax(ranks))
    ok = [loss[lo] > 10.0, loss[hi] < 2.0]
    note = "" if ranks[hi] == 100 else " (rank 100 not in this sweep: highest rank used)"
    return _grade(sum(ok), 2), (f"SVD accuracy loss {loss[lo]:.2f} points at rank {ranks[lo]}, "
                                f"{loss[hi]:.2f} points at rank {ranks[hi]}{note}")


def verdict_qr_close(ranks, acc_svd, acc_qr, at=(30, 50, 70)) -> tuple[str, str]:
    """T-concl-qr-close-to-svd: 0 <= top-1(SVD) - top-1(QR) <= 3 points at ranks 30/50/70."""
    ranks = list(ranks)
    pts = [r for r in at if r in ranks]
    if not pts:
        return UNTESTABLE, f"none of the ranks {at} in the sweep"
    gaps = [acc_svd[ranks.index(r)] - acc_qr[ranks.index(r)] for r in pts]
    ok = [0.0 <= g <= 3.0 for g in gaps]
    return _grade(sum(ok), len(ok)), "accuracy gap SVD - QR: " + ", ".join(
        f"r={r}: {g:+.2f} points" for r, g in zip(pts, gaps, strict=True))


def verdict_aca_weak(ranks, acc_svd, acc_aca) -> tuple[str, str]:
    """T-concl-aca-weak: top-1(ACA) below top-1(SVD) by > 3 points at every rank in 30..70."""
    ranks = np.asarray(ranks)
    sel = (ranks >= 30) & (ranks <= 70)
    if not sel.any():
        return UNTESTABLE, "no rank between 30 and 70 in the sweep"
    gaps = np.asarray(acc_svd, float)[sel] - np.asarray(acc_aca, float)[sel]
    ok = gaps > 3.0
    return _grade(int(ok.sum()), len(ok)), (
        f"accuracy gap SVD - ACA at ranks {ranks[sel].tolist()}: {gaps.min():.2f} to "
        f"{gaps.max():.2f} points (criterion > 3)")


def verdict_suitable(rows: list[dict]) -> tuple[str, str]:
    """T-concl-suitable: some H variant saves >= 20 % time with accuracy loss <= 2 points.
    Partly: some variant saves >= 20 % time, or one loses <= 2 points while saving time.

    Only hierarchical variants count: an adaptive build that kept the whole matrix as one
    low-rank block is a global truncated SVD, not an H-matrix in any useful sense."""
    timed = [r for r in rows if r.get("family") != GLOBAL_SVD and "time_saving_pct" in r]
    one_block = [r for r in timed if r.get("n_lowrank", 0) + r.get("n_dense", 0) == 1]
    hm = [r for r in timed if r not in one_block]
    excluded = ""
    if one_block:
        q = [r for r in one_block if r["time_saving_pct"] >= 20 and r["loss_pts"] <= 2]
        excluded = (f"; {len(one_block)} one-block builds (global low rank) left out"
                    + (f", {len(q)} of which would qualify" if q else ""))
    if not hm:
        return UNTESTABLE, "no timed hierarchical H-matrix variant" + excluded
    good = [r for r in hm if r["time_saving_pct"] >= 20 and r["loss_pts"] <= 2]
    if good:
        best = max(good, key=lambda r: r["time_saving_pct"])
        return REPRODUCED, (f"{len(good)} H variants qualify; e.g. {best['variant']}: "
                            f"{best['time_saving_pct']:.1f} % time saved, "
                            f"{best['loss_pts']:.2f} points lost" + excluded)
    fast = [r for r in hm if r["time_saving_pct"] >= 20]
    cheap = [r for r in hm if r["loss_pts"] <= 2 and r["time_saving_pct"] > 0]
    best_t = max(hm, key=lambda r: r["time_saving_pct"])
    text = (f"no H variant saves >= 20 % with <= 2 points lost; largest time saving "
            f"{best_t['time_saving_pct']:.1f} % ({best_t['variant']}, "
            f"{best_t['loss_pts']:.2f} points lost)")
    if cheap:
        c = max(cheap, key=lambda r: r["time_saving_pct"])
        text += (f"; best with <= 2 points lost: {c['variant']} saves "
                 f"{c['time_saving_pct']:.1f} %")
    return (PARTLY if (fast or cheap) else NOT), text + excluded


def verdict_accuracy_decreases(rows: list[dict], n_images: int,
                               alpha: float = 0.05) -> tuple[str, str]:
    """T-concl-accuracy-decreases: every variant with storage < dense has top-1 <= dense.

    A variant more accurate than the dense layer is tested with McNemar's exact test on the
    images it fixes and breaks (``fixed``/``broken``): a significant gain (one-sided p < alpha)
    makes the claim not reproduced; gains within the noise of the test set make it partly."""
    from scipy.stats import binomtest

    cand = [r for r in rows if r["storage_ratio"] < 1.0]
    if not cand:
        return UNTESTABLE, "no variant stores less than the dense matrix"
    gains = [r for r in cand if r["loss_pts"] < 0]
    if not gains:
        return REPRODUCED, f"all {len(cand)} variants with storage < dense have top-1 <= dense"
    pvals = [binomtest(r["fixed"], r["fixed"] + r["broken"], 0.5,
                       alternative="greater").pvalue for r in gains]
    best = min(gains, key=lambda r: r["loss_pts"])
    significant = [r for r, p in zip(gains, pvals, strict=True) if p < alpha]
    text = (f"{len(gains)} of {len(cand)} variants are MORE accurate than the dense layer; "
            f"largest gain {-best['loss_pts']:.2f} points ({best['fixed']} images fixed, "
            f"{best['broken']} broken, of {n_images}; {best['variant']}); smallest McNemar "
            f"p-value {min(pvals):.2g}")
    if significant:
        return NOT, text + f": {len(significant)} gains significant at {alpha}"
    return PARTLY, text + f": no gain significant at {alpha} (within the noise of the test set)"
