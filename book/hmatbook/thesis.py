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
from dataclasses import dataclass, field
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
    "verdict_suitable", "verdict_accuracy_decreases", "top1_gap", "paired_gap", "loss_interval",
    "substitute", "spearman_interval", "stable_rank", "verdict_fig4_stable",
    "verdict_fig1_structure",
]

METHOD_LABEL = {"svd": "SVD", "rrqr": "QR", "qr": "QR", "aca": "ACA",
                "aca_plain": "ACA, plain cross"}


def compressor(method: str):
    """The ``method=`` handed to :func:`hmat.compress`: hmat's own names, and ``"aca_plain"``,
    the cross approximation without hmat's recompression (as the thesis' ACA curves)."""
    import hmat

    return hmat.ACA(recompress=False) if method == "aca_plain" else method


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
    # per variant label: which images its top-1 gets right (filled by evaluate), so that two
    # variants can be compared image by image (paired intervals)
    correct_by_variant: dict = field(default_factory=dict)

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
    from .timing import saving_interval, time_products

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
        layer.correct_by_variant[row["variant"]] = ok
        _, lo, hi = loss_interval(row, layer.n_images)
        row.update(loss_lo_pts=lo, loss_hi_pts=hi)  # paired 95 % interval over the images
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
        if t.rounds >= 6:  # distribution-free 95 % interval of the median paired ratio
            _, lo, hi = saving_interval(t)
            row.update(time_saving_lo_pct=100.0 * lo, time_saving_hi_pct=100.0 * hi)
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
# Each verdict_* reads its thresholds from data/claims.yml (ledger.threshold) and returns a
# ledger.Verdict: (verdict, measured text) plus value, interval and qualifiers. No "partly":
# a claim with several parts is reproduced only if all hold (ledger.combine), and an interval
# that straddles a threshold is inconclusive (ledger.decide).
def _iv(x) -> tuple[float, float, float]:
    """(estimate, lo, hi) from a number (no interval) or a triple."""
    if isinstance(x, (tuple, list, np.ndarray)):
        e, lo, hi = (float(v) for v in x)
        return e, min(lo, e), max(hi, e)
    return float(x), float(x), float(x)


def _fmt_iv(x, unit: str = "", digits: int = 1) -> str:
    e, lo, hi = _iv(x)
    if lo == hi:
        return f"{e:.{digits}f}{unit}"
    return f"{e:.{digits}f}{unit} [{lo:.{digits}f}, {hi:.{digits}f}]"


def top1_gap(acc_a: float, acc_b: float, n_images: int | None) -> tuple[float, float, float]:
    """Top-1 gap a - b in points with a 95 % interval that ignores the pairing (the images are
    the same, so the true paired interval is narrower: this one is conservative). Without
    ``n_images`` the gap has no interval."""
    g = float(acc_a) - float(acc_b)
    if not n_images:
        return g, g, g
    pa, pb = float(acc_a) / 100, float(acc_b) / 100
    se = 100 * float(np.sqrt(max(pa * (1 - pa), 0) / n_images + max(pb * (1 - pb), 0) / n_images))
    return g, g - 1.96 * se, g + 1.96 * se


def paired_gap(layer: Layer, a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Top-1 of variant(s) ``a`` minus variant(s) ``b`` in points over the same images, with a
    paired ``level`` interval; each a variant label scored by :func:`evaluate`, or a list of
    labels (the gap of their mean top-1, e.g. over a rank sweep)."""
    from scipy.stats import norm

    def mean_ok(v):
        labels = [v] if isinstance(v, str) else list(v)
        missing = [x for x in labels if x not in layer.correct_by_variant]
        if missing:
            raise KeyError(f"variants {missing} were not scored by evaluate() on this layer")
        return np.mean([layer.correct_by_variant[x] for x in labels], axis=0)

    d = mean_ok(a) - mean_ok(b)
    n = d.size
    est = 100 * float(d.mean())
    z = float(norm.ppf(0.5 + level / 2))
    half = 100 * z * float(d.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0
    return est, est - half, est + half


def loss_interval(row: dict, n_images: int) -> tuple[float, float, float]:
    """Top-1 loss (dense - variant) of an :func:`evaluate` row with its paired 95 % interval."""
    from .imagenet import paired_difference

    return paired_difference(int(row["broken"]), int(row["fixed"]), int(n_images))


def substitute(claim_id: str, layer: Layer | None = None, *, n_images: int | None = None,
               images_folder: str | None = None) -> list[str]:
    """Qualifiers "on a substitute" for a run on ``layer`` against the model and data that the
    claim is about (``about`` in claims.yml): another model, or fewer validation images."""
    from . import ledger

    about = str(ledger.claim(claim_id).get("about", ""))
    out = []
    if layer is not None:
        names = {"mobilenet_v2": "MobileNetV2", "googlenet": "GoogLeNet", "resnet": "ResNet"}
        ours = names.get(thesis_model(layer.model), layer.model)
        meant = [v for v in names.values() if v in about]
        if meant and ours not in meant:
            out.append(f"on a substitute: {layer.label} for {' / '.join(meant)}")
        if n_images is None and layer.labels is not None:
            n_images = layer.n_images
        images_folder = images_folder or (layer.feature_meta or {}).get("folder")
    if n_images is not None and "50,000" in about and n_images < 50_000:
        resized = (" (stored pre-resized to 227x227)"
                   if images_folder and "1300" in str(images_folder) else "")
        out.append(f"on a substitute: {n_images} of the 50,000 ImageNet val images{resized}")
    return out


def verdict_table1(claim_id: str, time_saving, loss) -> tuple[str, str]:
    """T1-*: the time saving's interval (%, paired rounds) inside [max(0, thesis - 15),
    thesis + 15] and the top-1 loss's interval (points, paired over the images) inside
    [thesis / 2, 2 x thesis]; bands from claims.yml. ``time_saving``, ``loss``: number or
    (estimate, lo, hi)."""
    from . import ledger

    t_band = ledger.threshold(claim_id, "time_saving_pct")
    l_band = ledger.threshold(claim_id, "loss_pts")
    ts, lo = _iv(time_saving), _iv(loss)
    v_t = ledger.decide_band(ts[1:], *t_band)
    v_l = ledger.decide_band(lo[1:], *l_band)
    t_ref = ledger.test_of(claim_id, "time_saving_pct")["source_value"]
    l_ref = ledger.test_of(claim_id, "loss_pts")["source_value"]
    text = (f"time saving {_fmt_iv(ts, ' %')} (thesis {t_ref:.2f} %, band "
            f"[{t_band[0]:g}, {t_band[1]:g}]: {v_t}); top-1 loss {_fmt_iv(lo, ' points', 2)} "
            f"(thesis {l_ref:.2f}, band [{l_band[0]:g}, {l_band[1]:g}]: {v_l})")
    return ledger.Verdict(ledger.combine(v_t, v_l), text, value=ts[0], interval=ts[1:])


def verdict_abstract_time(savings: dict) -> tuple[str, str]:
    """T-abstract-time: ``savings`` = {model: {rank: time saving % or (est, lo, hi)}}; every
    interval above the threshold of claims.yml (5 %)."""
    from . import ledger

    if not savings:
        return ledger.Verdict("not testable here", "no model available")
    thr = ledger.threshold("T-abstract-time", "time_saving_pct")
    vals = [(m, r, _iv(s)) for m, d in savings.items() for r, s in d.items()]
    parts = [ledger.decide(iv[1:], ">", thr) for _, _, iv in vals]
    text = "; ".join(f"{m} r={r}: {_fmt_iv(iv, ' %')}" for m, r, iv in vals)
    worst = min(vals, key=lambda x: x[2][0])[2]
    return ledger.Verdict(ledger.combine(*parts), f"time saving (criterion > {thr:g} %): {text}",
                          value=worst[0], interval=worst[1:])


def _step(a, b, drop: float = 0.0) -> str:
    """A decreasing step a -> b, read on the bounds of the drop a - b that the two intervals
    allow: holds when even the smallest drop exceeds ``drop`` (0: the intervals are disjoint
    with a above), fails when even the largest is below it (0: disjoint with b above),
    inconclusive otherwise (0: they overlap)."""
    a, b = _iv(a), _iv(b)
    if a[1] - b[2] > drop:
        return "reproduced"
    if a[2] - b[1] < drop:
        return "not reproduced"
    return "inconclusive"


def verdict_tradeoff(rows: dict) -> tuple[str, str]:
    """T-disc-tradeoff: ``rows`` = {model: {rank: (time saving, loss)}}, each a number or
    (est, lo, hi); both decrease from rank to rank for every model."""
    from . import ledger

    if not rows:
        return ledger.Verdict("not testable here", "no model available")
    drops = (ledger.threshold("T-disc-tradeoff", "time_saving_drop"),
             ledger.threshold("T-disc-tradeoff", "loss_drop"))
    parts, lines = [], []
    for m, d in rows.items():
        ranks = sorted(d)
        for k, what in ((0, "time saving"), (1, "loss")):
            steps = [_step(d[a][k], d[b][k], drops[k]) for a, b in pairwise(ranks)]
            parts += steps
            lines.append(f"{m} {what} " + " -> ".join(_fmt_iv(d[r][k], digits=2) for r in ranks)
                         + f" over ranks {ranks} (steps: {', '.join(steps)})")
    return ledger.Verdict(ledger.combine(*parts), "; ".join(lines))


def verdict_model_dependent(rank30: dict) -> tuple[str, str]:
    """T-disc-model-dependent: ``rank30`` = {model: (time saving %, loss points)}; needs two or
    more models; the spread across models exceeds the threshold of claims.yml in either."""
    from . import ledger

    if len(rank30) < 2:
        return ledger.Verdict("not testable here", (
            f"only {len(rank30)} model with weights available ({', '.join(rank30) or 'none'}); "
            "the claim needs two or more"))
    thr = ledger.threshold("T-disc-model-dependent", "spread")
    ts = [_iv(v[0])[0] for v in rank30.values()]
    lo = [_iv(v[1])[0] for v in rank30.values()]
    spread_t, spread_l = max(ts) - min(ts), max(lo) - min(lo)
    ok = spread_t > thr or spread_l > thr
    return ledger.Verdict("reproduced" if ok else "not reproduced",
                          f"at rank 30 the time saving spans {spread_t:.1f} points and the "
                          f"accuracy loss {spread_l:.2f} points across {len(rank30)} models",
                          value=max(spread_t, spread_l))


def _order_step(a: float, b: float, tie: float) -> str:
    """"a before b" (a smaller): beyond the relative tie it holds or fails; inside, a tie."""
    if a * (1 + tie) < b:
        return "reproduced"
    if b * (1 + tie) < a:
        return "not reproduced"
    return "inconclusive"


def verdict_fig1_structure(H) -> tuple[str, str]:
    """T-fig1-structure: ``H`` has low-rank and dense blocks, and its low-rank blocks cover more
    of the matrix's entries than the threshold of claims.yml (a half)."""
    from . import ledger

    thr = ledger.threshold("T-fig1-structure", "lowrank_area")
    m, n = H.shape
    lr, dn = H.lr_desc, H.d_desc
    area = float(np.sum(lr[:, 1].astype(np.int64) * lr[:, 3])) / (m * n) if len(lr) else 0.0
    ok = len(lr) > 0 and len(dn) > 0 and area > thr
    return ledger.Verdict("reproduced" if ok else "not reproduced", (
        f"{len(lr)} low-rank and {len(dn)} dense blocks; the low-rank blocks cover "
        f"{100 * area:.1f} % of the {m} x {n} entries (criterion: both kinds, > "
        f"{100 * thr:g} %)"), value=area)


def verdict_fig2_order(mean_time: dict, what: str = "time per product",
                       fmt: str = "{:.1f} us", same_storage: bool = False) -> tuple[str, str]:
    """T-fig2-svd-fastest: mean time over ranks ordered SVD < QR < ACA, each step beyond the
    relative tie of claims.yml; a tie is inconclusive (no order seen). ``same_storage``: the
    three store identical bytes, so a tie is expected by construction."""
    from . import ledger

    tie = ledger.threshold("T-fig2-svd-fastest", "time_ratio_tie")
    s, q, a = mean_time["svd"], mean_time["rrqr"], mean_time["aca"]
    steps = [_order_step(s, q, tie), _order_step(q, a, tie)]
    spread = (max(s, q, a) - min(s, q, a)) / min(s, q, a)
    text = (f"mean {what} over the ranks: SVD {fmt.format(s)}, QR {fmt.format(q)}, ACA "
            f"{fmt.format(a)} (spread {100 * spread:.1f} %; steps within {100 * tie:g} % are "
            f"ties): SVD->QR {steps[0]}, QR->ACA {steps[1]}")
    quals = (["by construction: the three methods store the same bytes at each rank, so equal "
              "times are expected"] if same_storage else [])
    return ledger.Verdict(ledger.combine(*steps), text, value=spread, qualifiers=quals)


def verdict_fig2_close(ranks, times: dict, intervals: dict | None = None) -> tuple[str, str]:
    """T-fig2-close-below-20: relative spread (max-min)/min of the methods' times, mean over
    ranks <= 20 below and mean over ranks > 20 at or above the thresholds of claims.yml.
    ``intervals`` = {method: [(lo, hi) per rank]} of the times: the mean spreads then get an
    interval (smallest and largest spread the intervals allow), decided against the thresholds
    (straddling: inconclusive)."""
    from . import ledger

    ranks = np.asarray(ranks)
    methods = ("svd", "rrqr", "aca")
    t = np.vstack([np.asarray(times[m], float) for m in methods])
    spread = (t.max(0) - t.min(0)) / t.min(0)
    cid = "T-fig2-close-below-20"
    lo = np.array(ledger.rank_selected(cid, "spread_low_ranks", ranks), bool)
    hi = np.array(ledger.rank_selected(cid, "spread_high_ranks", ranks), bool)
    split = ledger.ranks_of(cid, "spread_low_ranks")["threshold"]
    if not lo.any() or not hi.any():
        return ledger.Verdict("not testable here",
                              f"the rank sweep needs ranks on both sides of {split:g}")
    t_lo = ledger.threshold("T-fig2-close-below-20", "spread_low_ranks")
    t_hi = ledger.threshold("T-fig2-close-below-20", "spread_high_ranks")
    if intervals is not None:
        a = np.vstack([[x[0] for x in intervals[m]] for m in methods])
        b = np.vstack([[x[1] for x in intervals[m]] for m in methods])
        s_min = np.maximum(0.0, a.max(0) - b.min(0)) / b.min(0)
        s_max = (b.max(0) - a.min(0)) / a.min(0)
    else:
        s_min = s_max = spread
    iv_lo = (float(s_min[lo].mean()), float(s_max[lo].mean()))
    iv_hi = (float(s_min[hi].mean()), float(s_max[hi].mean()))
    parts = [ledger.decide(iv_lo, "<", t_lo), ledger.decide(iv_hi, ">=", t_hi)]
    s_lo, s_hi = float(spread[lo].mean()), float(spread[hi].mean())

    def pct(x, iv):
        return (f"{100 * x:.1f} %" if iv[0] == iv[1] else
                f"{100 * x:.1f} % [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]")

    r_lo, r_hi = (ledger.ranks_of(cid, n) for n in ("spread_low_ranks", "spread_high_ranks"))
    at_lo = f"ranks {r_lo['comparison']} {r_lo['threshold']:g}"
    at_hi = f"ranks {r_hi['comparison']} {r_hi['threshold']:g}"
    return ledger.Verdict(ledger.combine(*parts), (
        f"mean spread between methods {pct(s_lo, iv_lo)} at {at_lo} ({parts[0]}), "
        f"{pct(s_hi, iv_hi)} at {at_hi} ({parts[1]}) (criterion: below {100 * t_lo:g} % at "
        f"{at_lo}, at least {100 * t_hi:g} % at {at_hi})"), value=s_hi, interval=iv_hi)


def spearman_interval(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho with a Fisher-z interval (standard error sqrt(1.06 / (n - 3)), Fieller,
    Hartley & Pearson 1957); needs 4 or more points."""
    from scipy.stats import norm, spearmanr

    n = len(x)
    if n < 4:
        raise ValueError(f"spearman_interval needs 4 or more points, got {n}")
    rho = float(spearmanr(x, y).statistic)
    z = np.arctanh(np.clip(rho, -0.9999, 0.9999))
    half = float(norm.ppf(0.5 + level / 2)) * np.sqrt(1.06 / (n - 3))
    return rho, float(np.tanh(z - half)), float(np.tanh(z + half))


def verdict_fig2_monotone(ranks, times, what: str = "SVD product time") -> tuple[str, str]:
    """T-fig2-lower-rank-faster: Spearman correlation of rank and time (SVD), its 95 % interval
    against the threshold of claims.yml (0.8)."""
    from . import ledger

    thr = ledger.threshold("T-fig2-lower-rank-faster", "spearman")
    rho, lo, hi = spearman_interval(ranks, times)
    return ledger.Verdict(ledger.decide((lo, hi), ">=", thr),
                          f"Spearman correlation of rank and {what}: {rho:.2f} [{lo:.2f}, "
                          f"{hi:.2f}] over {len(ranks)} ranks (criterion >= {thr:g})",
                          value=rho, interval=(lo, hi))


def verdict_fig3_smaller(ranks, ratio: dict) -> tuple[str, str]:
    """T-fig3-storage-smaller: storage ratio below the threshold of claims.yml (1) at every
    rank its ``ranks`` selects (<= 70), SVD and QR."""
    from . import ledger

    cid = "T-fig3-storage-smaller"
    thr = ledger.threshold(cid, "storage_ratio")
    sel = np.array(ledger.rank_selected(cid, "storage_ratio", ranks), bool)
    spec = ledger.ranks_of(cid, "storage_ratio")
    at = f"ranks {spec['comparison']} {spec['threshold']:g}"
    if not sel.any():
        return ledger.Verdict("not testable here", f"the rank sweep has no rank at {at}")
    vals = np.concatenate([np.asarray(ratio[m])[sel] for m in ("svd", "rrqr")])
    ok = bool(np.all(vals < thr))
    return ledger.Verdict("reproduced" if ok else "not reproduced",
                          f"H storage / dense storage at {at} (SVD, QR): "
                          f"{vals.min():.3f} to {vals.max():.3f}", value=float(vals.max()))


def verdict_fig3_svd_qr_equal(ranks, nbytes: dict) -> tuple[str, str]:
    """T-fig3-svd-qr-equal: storage of SVD and QR differs by less than the threshold of
    claims.yml (1 %) at every rank (holds by construction in hmat: claims.yml says so)."""
    from . import ledger

    thr = ledger.threshold("T-fig3-svd-qr-equal", "storage_difference")
    s, q = np.asarray(nbytes["svd"], float), np.asarray(nbytes["rrqr"], float)
    diff = np.abs(s - q) / s
    ok = bool(np.all(diff < thr))
    return ledger.Verdict("reproduced" if ok else "not reproduced",
                          f"largest relative storage difference SVD vs QR over {len(diff)} "
                          f"ranks: {100 * diff.max():.2f} %", value=float(diff.max()))


def verdict_fig3_aca_least(ranks, nbytes: dict, dense_bytes: int,
                           at_tolerance: dict | None = None) -> tuple[str, str]:
    """T-fig3-aca-least: (1) at the same tolerance ACA stores more than SVD (ratio above the
    threshold of claims.yml) at every tolerance of ``at_tolerance`` = {"tol": [...], "svd":
    bytes, "aca": bytes}; (2) at ranks >= 70 ACA stores >= 95 % of dense. Both must hold. At a
    fixed rank hmat stores the same bytes for every method, so (1) needs the tolerance runs."""
    from . import ledger

    a_rank = np.asarray(nbytes["aca"], float)
    hi = np.array(ledger.rank_selected("T-fig3-aca-least", "aca_over_dense_r70", ranks), bool)
    spec = ledger.ranks_of("T-fig3-aca-least", "aca_over_dense_r70")
    at = f"ranks {spec['comparison']} {spec['threshold']:g}"
    if not hi.any():
        return ledger.Verdict("not testable here", f"the rank sweep has no rank at {at}")
    t2 = ledger.threshold("T-fig3-aca-least", "aca_over_dense_r70")
    ratio_hi = a_rank[hi] / dense_bytes
    v2 = "reproduced" if np.all(ratio_hi >= t2) else "not reproduced"
    text2 = (f"ACA storage at {at}: {100 * ratio_hi.min():.1f} to "
             f"{100 * ratio_hi.max():.1f} % of dense (criterion >= {100 * t2:g} %)")
    if not at_tolerance:
        return ledger.Verdict(ledger.combine("not testable here", v2),
                              "no equal-tolerance builds; " + text2)
    t1 = ledger.threshold("T-fig3-aca-least", "aca_over_svd")
    r = np.asarray(at_tolerance["aca"], float) / np.asarray(at_tolerance["svd"], float)
    v1 = "reproduced" if np.all(r > t1) else "not reproduced"
    text1 = ("at equal tolerance ACA / SVD bytes " + ", ".join(
        f"{x:.3f} (tol {t:g})" for x, t in zip(r, at_tolerance["tol"], strict=True))
        + f" (criterion > {t1:g} at every tolerance)")
    return ledger.Verdict(ledger.combine(v1, v2), f"{text1}; {text2}", value=float(r.min()))


def direction_changes(y) -> int:
    """How often a curve turns: sign changes between consecutive nonzero differences (a run of
    equal values is skipped, so a flat step is not a turn)."""
    d = np.diff(np.asarray(y, float))
    signs = np.sign(d[d != 0])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def verdict_fig2_aca_choppy(at_tolerance: dict) -> tuple[str, str]:
    """T-fig2-aca-choppy: ACA's storage curve over the tolerance grid (``at_tolerance`` =
    {"tol": [...], "svd": bytes, "aca": bytes}, each method picking its own ranks) changes
    direction at least the threshold of claims.yml more often than SVD's. A count of a
    deterministic build: no interval."""
    from . import ledger

    tols = np.asarray(at_tolerance["tol"], float)
    if len(tols) < 3:
        return ledger.Verdict("not testable here",
                              f"a curve over {len(tols)} tolerances cannot change direction")
    if np.any(np.diff(tols) <= 0) and np.any(np.diff(tols) >= 0):
        raise ValueError("at_tolerance['tol'] must be sorted (increasing or decreasing)")
    thr = ledger.threshold("T-fig2-aca-choppy", "aca_extra_direction_changes")
    n_aca, n_svd = (direction_changes(at_tolerance[m]) for m in ("aca", "svd"))
    extra = n_aca - n_svd
    return ledger.Verdict("reproduced" if extra >= thr else "not reproduced",
                          f"direction changes of the storage curve over {len(tols)} tolerances "
                          f"({tols.min():g} to {tols.max():g}), each method picking its ranks: "
                          f"ACA {n_aca}, SVD {n_svd} (criterion: ACA at least {thr:g} more)",
                          value=float(extra))


def verdict_fig4_order(mean_acc: dict, n_images: int | None = None,
                       gaps=None) -> tuple[str, str]:
    """T-fig4-svd-most-accurate: mean top-1 over ranks ordered SVD > QR > ACA: each gap's
    95 % interval above the threshold of claims.yml (0). ``gaps``: the paired (est, lo, hi) of
    SVD - QR and QR - ACA (:func:`paired_gap`); else :func:`top1_gap` (conservative)."""
    from . import ledger

    thr = ledger.threshold("T-fig4-svd-most-accurate", "accuracy_gap")
    s, q, a = mean_acc["svd"], mean_acc["rrqr"], mean_acc["aca"]
    g1, g2 = gaps if gaps is not None else (top1_gap(s, q, n_images), top1_gap(q, a, n_images))
    parts = [ledger.decide(g[1:], ">", thr) for g in (g1, g2)]
    return ledger.Verdict(ledger.combine(*parts), (
        f"mean top-1 over the ranks: SVD {s:.2f} %, QR {q:.2f} %, ACA {a:.2f} %; gaps SVD - QR "
        f"{_fmt_iv(g1, digits=2)}, QR - ACA {_fmt_iv(g2, digits=2)} points"),
        value=g1[0], interval=g1[1:])


def verdict_fig4_drop(ranks, loss_pts) -> tuple[str, str]:
    """T-fig4-low-rank-drop: loss at the lowest rank above 10 points and at rank 100 (the
    highest rank measured, when 100 is not in the sweep) below 2 points (claims.yml); each loss
    a number or (est, lo, hi)."""
    from . import ledger

    ranks = np.asarray(ranks)
    loss = [_iv(x) for x in loss_pts]
    lo, hi = int(np.argmin(ranks)), int(np.argmax(ranks))
    t_lo = ledger.threshold("T-fig4-low-rank-drop", "loss_lowest_rank")
    t_hi = ledger.threshold("T-fig4-low-rank-drop", "loss_rank_100")
    parts = [ledger.decide(loss[lo][1:], ">", t_lo), ledger.decide(loss[hi][1:], "<", t_hi)]
    note = "" if ranks[hi] == 100 else " (rank 100 not in this sweep: highest rank used)"
    return ledger.Verdict(ledger.combine(*parts), (
        f"SVD top-1 loss {_fmt_iv(loss[lo], ' points', 2)} at rank {ranks[lo]}, "
        f"{_fmt_iv(loss[hi], ' points', 2)} at rank {ranks[hi]}{note}"),
        value=loss[hi][0], interval=loss[hi][1:])


def stable_rank(ranks, acc, within: float) -> int:
    """Lowest rank from which top-1 stays within ``within`` points of its value at the highest
    rank (for every higher rank of the sweep too)."""
    order = np.argsort(ranks)
    r, a = np.asarray(ranks)[order], np.asarray(acc, float)[order]
    ok = np.abs(a - a[-1]) <= within
    k = len(r) - 1
    while k > 0 and ok[k - 1]:
        k -= 1
    return int(r[k])


def verdict_fig4_stable(ranks, acc: dict) -> tuple[str, str]:
    """T-fig4-svd-stable-longest: SVD's :func:`stable_rank` (threshold of claims.yml) lower than
    QR's and ACA's (``acc`` = {"svd", "rrqr", "aca"}: top-1 per rank); a tie is inconclusive."""
    from . import ledger

    within = ledger.threshold("T-fig4-svd-stable-longest", "stable_within_pts")
    st = {m: stable_rank(ranks, acc[m], within) for m in ("svd", "rrqr", "aca")}
    others = min(st["rrqr"], st["aca"])
    v = ("reproduced" if st["svd"] < others else
         "not reproduced" if st["svd"] > others else "inconclusive")
    return ledger.Verdict(v, (f"top-1 within {within:g} points of its highest-rank value from "
                              f"rank {st['svd']} on (SVD), {st['rrqr']} (QR), {st['aca']} (ACA)"),
                          value=st["svd"])


def verdict_qr_close(ranks, acc_svd, acc_qr, n_images: int | None = None,
                     gaps=None) -> tuple[str, str]:
    """T-concl-qr-close-to-svd: top-1(SVD) - top-1(QR) inside the band of claims.yml ([0, 3]
    points) at the ranks its ``ranks`` names (30/50/70), each gap with its 95 % interval:
    ``gaps`` = {rank: paired (est, lo, hi)} (:func:`paired_gap`), else :func:`top1_gap`
    (conservative)."""
    from . import ledger

    ranks = list(ranks)
    cid = "T-concl-qr-close-to-svd"
    pts = list(dict.fromkeys(r for r, s in zip(ranks, ledger.rank_selected(
        cid, "accuracy_gap", ranks), strict=True) if s))
    if not pts:
        spec = ledger.ranks_of(cid, "accuracy_gap")
        return ledger.Verdict("not testable here", f"no rank of the sweep at ranks "
                              f"{spec['comparison']} {spec['threshold']}")
    band = ledger.threshold("T-concl-qr-close-to-svd", "accuracy_gap")
    gaps = [_iv(gaps[r]) if gaps is not None else
            top1_gap(acc_svd[ranks.index(r)], acc_qr[ranks.index(r)], n_images) for r in pts]
    parts = [ledger.decide_band(g[1:], *band) for g in gaps]
    worst = max(gaps, key=lambda g: abs(g[0]))
    return ledger.Verdict(ledger.combine(*parts), "top-1 gap SVD - QR: " + ", ".join(
        f"r={r}: {_fmt_iv(g, digits=2)} points ({v})"
        for r, g, v in zip(pts, gaps, parts, strict=True)), value=worst[0], interval=worst[1:])


def verdict_aca_weak(ranks, acc_svd, acc_aca, n_images: int | None = None,
                     gaps=None) -> tuple[str, str]:
    """T-concl-aca-weak: top-1(ACA) below top-1(SVD) by more than the threshold of claims.yml
    (3 points) at every rank its ``ranks`` selects (30..70), each gap with its 95 % interval:
    ``gaps`` = {rank: paired (est, lo, hi)} (:func:`paired_gap`), else :func:`top1_gap`
    (conservative)."""
    from . import ledger

    ranks = np.asarray(ranks)
    sel = np.array(ledger.rank_selected("T-concl-aca-weak", "accuracy_gap", ranks), bool)
    if not sel.any():
        lo, hi = ledger.ranks_of("T-concl-aca-weak", "accuracy_gap")["threshold"]
        return ledger.Verdict("not testable here", f"no rank between {lo:g} and {hi:g} in the "
                              "sweep")
    thr = ledger.threshold("T-concl-aca-weak", "accuracy_gap")
    if gaps is not None:
        gaps = [_iv(gaps[int(r)]) for r in ranks[sel]]
    else:
        gaps = [top1_gap(s, a, n_images) for s, a in
                zip(np.asarray(acc_svd, float)[sel], np.asarray(acc_aca, float)[sel],
                    strict=True)]
    parts = [ledger.decide(g[1:], ">", thr) for g in gaps]
    worst = min(gaps, key=lambda g: g[0])
    return ledger.Verdict(ledger.combine(*parts), (
        f"top-1 gap SVD - ACA at ranks {ranks[sel].tolist()}: "
        + ", ".join(_fmt_iv(g, digits=2) for g in gaps) + f" points (criterion > {thr:g})"),
        value=worst[0], interval=worst[1:])


def verdict_suitable(rows: list[dict], n_images: int | None = None) -> tuple[str, str]:
    """T-concl-suitable: some hierarchical H variant saves >= 20 % time with top-1 loss <= 2
    points (claims.yml), both with intervals where the rows have them (``time_saving_lo_pct``/
    ``_hi_pct``; ``fixed``/``broken`` with ``n_images``). Reproduced if one variant's intervals
    meet both, not reproduced if every variant misses one wholly, inconclusive otherwise.

    Only hierarchical variants count: an adaptive build that kept the whole matrix as one
    low-rank block is a global truncated SVD, not an H-matrix in any useful sense."""
    from . import ledger

    t_min = ledger.threshold("T-concl-suitable", "time_saving_pct")
    l_max = ledger.threshold("T-concl-suitable", "loss_pts")
    timed = [r for r in rows if r.get("family") != GLOBAL_SVD and "time_saving_pct" in r]
    one_block = [r for r in timed if r.get("n_lowrank", 0) + r.get("n_dense", 0) == 1]
    hm = [r for r in timed if r not in one_block]
    excluded = (f"; {len(one_block)} one-block builds (global low rank) left out"
                if one_block else "")
    if not hm:
        return ledger.Verdict("not testable here", "no timed hierarchical H-matrix variant"
                              + excluded)

    def ivs(r):
        ts = (r["time_saving_pct"], r.get("time_saving_lo_pct", r["time_saving_pct"]),
              r.get("time_saving_hi_pct", r["time_saving_pct"]))
        lo = (loss_interval(r, n_images) if n_images and "fixed" in r
              else (r["loss_pts"],) * 3)
        return ts, lo

    graded = []
    for r in hm:
        ts, lo = ivs(r)
        v = ledger.combine(ledger.decide(ts[1:], ">=", t_min), ledger.decide(lo[1:], "<=", l_max))
        graded.append((r, v, ts, lo))
    verdicts = [g[1] for g in graded]
    overall = ("reproduced" if "reproduced" in verdicts else
               "not reproduced" if all(v == "not reproduced" for v in verdicts) else "inconclusive")
    pick = [g for g in graded if g[1] == overall] or graded
    r, _, ts, lo = max(pick, key=lambda g: g[2][0] - g[3][0])
    text = (f"{verdicts.count('reproduced')} of {len(hm)} hierarchical variants meet both bounds "
            f"(>= {t_min:g} % time saved, <= {l_max:g} points lost), "
            f"{verdicts.count('inconclusive')} inconclusive; e.g. {r['variant']}: "
            f"{_fmt_iv(ts, ' %')} time saved, {_fmt_iv(lo, ' points', 2)} lost" + excluded)
    return ledger.Verdict(overall, text, value=ts[0], interval=ts[1:])


def verdict_accuracy_decreases(rows: list[dict], n_images: int) -> tuple[str, str]:
    """T-concl-accuracy-decreases: every variant with storage < dense has top-1 <= dense:
    the paired 95 % interval of (variant - dense) of each (from the images it fixes and breaks)
    at or below 0 for every variant; one wholly above 0: not reproduced; else inconclusive."""
    from . import ledger
    from .imagenet import paired_difference

    thr = ledger.threshold("T-concl-accuracy-decreases", "top1_gain")
    cand = [r for r in rows if r["storage_ratio"] < 1.0]
    if not cand:
        return ledger.Verdict("not testable here", "no variant stores less than the dense matrix")
    gains = [(r, paired_difference(int(r["fixed"]), int(r["broken"]), n_images)) for r in cand]
    parts = [ledger.decide(g[1:], "<=", thr) for _, g in gains]
    best_r, best = max(gains, key=lambda x: x[1][2])
    text = (f"{sum(p == 'reproduced' for p in parts)} of {len(cand)} variants with storage < "
            f"dense are significantly less accurate than dense, {parts.count('inconclusive')} "
            f"within the noise, {parts.count('not reproduced')} significantly more accurate; "
            f"largest upper bound of the gain: {best_r['variant']} "
            f"{_fmt_iv(best, ' points', 2)} ({best_r['fixed']} images fixed, "
            f"{best_r['broken']} broken, of {n_images})")
    return ledger.Verdict(ledger.combine(*parts), text, value=best[0], interval=best[1:])
