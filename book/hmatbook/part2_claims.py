"""Verdicts for the claims of arXiv 2409.07028 (Part II), computed from measured numbers.

Each function applies the criterion written in ``data/claims.yml`` to numbers measured in a
notebook run and returns ``(verdict, measured)``: a verdict of the ledger and a sentence with the
numbers behind it. Nothing here measures; nothing here knows the expected answer.
"""

from __future__ import annotations

import math

from . import ledger
from .timing import median_interval

__all__ = ["H_METHOD", "FOUR", "exp1_poisson", "mech3_fewer_parameters", "exp2_threshold",
           "mech1_adaptive_bound", "key_outperforms", "key_realtime", "key_ntk",
           "mech2_ntk_training", "complexity_knlogn", "key_training_efficiency", "exp3_cnn",
           "check_navier_stokes", "check_ablation", "is_monotone"]

H_METHOD = "hmatrix"  # the paper's method: adaptive, error-bounded
FOUR = ("hmatrix", "svd", "prune", "quant")  # H-matrix against SVD, pruning, quantization
ROUNDING = 1e-6  # relative slack for floating-point rounding when a bound is met with equality


def _pct(x):
    return f"{100 * x:.3g} %"


def _ok(holds: bool) -> str:
    return "reproduced" if holds else "not reproduced"


def _both(a: bool, b: bool) -> str:
    """The verdict of a claim with two parts that must both hold (no "partly")."""
    return ledger.combine(_ok(a), _ok(b))


def exp1_poisson(dense_error: float, variants: list[dict]):
    """P-exp1-poisson: the best (lowest-error) H variant storing less than dense within the
    error ratio of claims.yml (2x), and every H-structured training (variants with
    ``epoch_ratios``: fine-tuning, from scratch) within the time ratio (1.5x) of a dense epoch,
    decided on the 95 % interval of the median of paired rounds (``pinn.epoch_time_ratios``).
    ``variants``: dicts with name, error (unseen), memory_fraction, and epoch_ratios (None for
    a compression after training, which trains nothing in H form)."""
    e_max = ledger.threshold("P-exp1-poisson", "error_ratio")
    t_max = ledger.threshold("P-exp1-poisson", "epoch_time_ratio")
    compressing = [v for v in variants if v.get("memory_fraction", 0.0) < 1.0]
    dropped = len(variants) - len(compressing)
    if not compressing:
        return ledger.Verdict("not testable here", "no H variant stored less than the dense layers")
    best = min(compressing, key=lambda v: v["error"])
    ratio_e = best["error"] / dense_error
    trained = [v for v in compressing if v.get("epoch_ratios")]
    spans = {v["name"]: median_interval(v["epoch_ratios"]) for v in trained}
    v_time = (ledger.combine(*(ledger.decide((lo, hi), "<=", t_max)
                               for _, lo, hi in spans.values()))
              if trained else "not testable here")
    measured = (f"dense error {dense_error:.3g}; best H variant '{best['name']}': error "
                f"{best['error']:.3g} ({ratio_e:.2f}x, criterion <= {e_max:g}x); time per "
                "epoch of H-structured training against dense (median of paired rounds, 95 %): "
                + (", ".join(f"'{k}' {m:.2f}x [{lo:.2f}, {hi:.2f}]"
                             for k, (m, lo, hi) in spans.items()) or "none trained")
                + f" (criterion <= {t_max:g}x; time part {v_time})")
    if dropped:
        measured += f" ({dropped} variant(s) storing >= dense not counted)"
    return ledger.Verdict(ledger.combine(_ok(ratio_e <= e_max), v_time), measured,
                          value=ratio_e)


def mech3_fewer_parameters(dense_error: float, dense_params: int, variants: list[dict]):
    """P-mech3-fewer-parameters: an H PINN within 2x of the dense error with <= 50 % of the
    stored parameters. ``variants``: dicts with name, error, params."""
    e_max = ledger.threshold("P-mech3-fewer-parameters", "error_ratio")
    p_max = ledger.threshold("P-mech3-fewer-parameters", "params")
    small = [v for v in variants if v["params"] <= p_max * dense_params]
    if not small:
        return "not testable here", (f"no H variant with <= {100 * p_max:g} % of the "
                                     "parameters was run")
    best = min(small, key=lambda v: v["error"])
    measured = (f"dense error {dense_error:.3g} with {dense_params} parameters; best H variant "
                f"with <= {100 * p_max:g} % parameters: '{best['name']}', {best['params']} "
                "parameters "
                f"({_pct(best['params'] / dense_params)}), error {best['error']:.3g} "
                f"({best['error'] / dense_error:.2f}x dense)")
    return ledger.Verdict(_ok(best["error"] <= e_max * dense_error), measured,
                          value=best["error"] / dense_error)


def is_monotone(values, increasing: bool, rtol: float = 0.0) -> bool:
    """Monotone (non-strictly) up to a relative slack ``rtol``."""
    v = list(values)
    for a, b in zip(v[:-1], v[1:], strict=True):
        if increasing and b < a * (1 - rtol) - 1e-300:
            return False
        if not increasing and b > a * (1 + rtol) + 1e-300:
            return False
    return True


def exp2_threshold(tols, storage, global_error, pinn_error=None):
    """P-exp2-threshold: storage decreasing and global error increasing with the threshold:
    no step of the threshold grid raises the storage, or lowers the global error, by more than
    the relative slack of claims.yml (0: monotone)."""
    order = sorted(range(len(tols)), key=lambda i: tols[i])
    st = [storage[i] for i in order]
    ge = [global_error[i] for i in order]
    mono_s = is_monotone(st, increasing=False,
                         rtol=ledger.threshold("P-exp2-threshold", "storage_rise"))
    mono_e = is_monotone(ge, increasing=True,
                         rtol=ledger.threshold("P-exp2-threshold", "error_drop"))
    measured = (f"thresholds {min(tols):.3g}..{max(tols):.3g}: storage "
                f"{_pct(st[0])} -> {_pct(st[-1])} of dense "
                f"({'monotone' if mono_s else 'NOT monotone'}), global weight error "
                f"{ge[0]:.3g} -> {ge[-1]:.3g} ({'monotone' if mono_e else 'NOT monotone'})")
    if pinn_error is not None:
        pe = [pinn_error[i] for i in order]
        measured += (f"; PINN error {pe[0]:.3g} -> {pe[-1]:.3g} "
                     f"({'monotone' if is_monotone(pe, True) else 'not monotone'})")
    return _both(mono_s, mono_e), measured


def mech1_adaptive_bound(rows: list[dict]):
    """P-mech1-adaptive-bound: measured error <= certified bound (x the factor of claims.yml,
    1; up to :data:`ROUNDING`) for every matrix and threshold, with storage < dense (fraction
    of claims.yml). ``rows``: dicts with error, bound, storage (fraction of dense)."""
    if not rows:
        raise ValueError("mech1_adaptive_bound needs measurements")
    e_max = ledger.threshold("P-mech1-adaptive-bound", "error_over_bound")
    s_max = ledger.threshold("P-mech1-adaptive-bound", "storage")
    held = all(r["error"] <= e_max * r["bound"] * (1 + ROUNDING) for r in rows)
    compressed = [r for r in rows if r["storage"] < s_max]
    worst = max(r["error"] / r["bound"] for r in rows)
    measured = (f"{len(rows)} builds: largest measured/bound ratio {worst:.3f}; "
                f"{len(compressed)} of them store less than dense")
    if held and len(compressed) == len(rows):
        return ledger.Verdict("reproduced", measured, value=worst)
    if held:
        return ledger.Verdict("not reproduced", measured + (
            " (the bound always holds, but at the smaller thresholds the H-matrix stores at "
            "least as much as the dense matrix)"), value=worst)
    return ledger.Verdict("not reproduced", measured + " (the bound was violated)", value=worst)


def _levels(rows):
    return sorted({r["fraction"] for r in rows if r["method"] in FOUR}, reverse=True)


def key_outperforms(rows_by_problem: dict, error_key: str = "test_error"):
    """P-key-outperforms: H has the lowest unseen-point error of the four methods at every matched
    memory level, on every problem, each by more than the tie of claims.yml (2 %; a tie is
    inconclusive). ``rows_by_problem``: {problem: rows of compare_methods}."""
    tie = ledger.threshold("P-key-outperforms", "error_tie")
    wins = ties = total = 0
    lines = []
    for problem, rows in rows_by_problem.items():
        for f in _levels(rows):
            here = {r["method"]: r[error_key] for r in rows
                    if r["fraction"] == f and r["method"] in FOUR and r.get("reachable", True)}
            if H_METHOD not in here:
                continue
            total += 1
            best_other = min((v, m) for m, v in here.items() if m != H_METHOD)
            h = here[H_METHOD]
            if h < best_other[0] * (1 - tie):
                wins += 1
                tag = "H best"
            elif h <= best_other[0] * (1 + tie):
                ties += 1
                tag = f"H tied with {best_other[1]}"
            else:
                tag = f"{best_other[1]} best ({best_other[0]:.3g} vs H {h:.3g})"
            lines.append(f"{problem} @{_pct(f)}: {tag}")
    if total == 0:
        return "not testable here", "no matched-memory comparison ran"
    measured = f"H best at {wins}, tied at {ties}, beaten at {total - wins - ties} of {total} " \
               "levels: " + "; ".join(lines)
    if wins == total:
        return ledger.Verdict("reproduced", measured)
    if wins + ties == total:  # a tie shows no advantage either way
        return ledger.Verdict("inconclusive", measured)
    return ledger.Verdict("not reproduced", measured)


def key_realtime(dense_error: float, dense_time: float, h_rows: list[dict],
                 equal: float | None = None):
    """P-key-realtime: a compressed (H) PINN runs inference faster than dense at equal accuracy
    (unseen error <= ``equal`` x dense). ``h_rows``: dicts with name, error, time."""
    if equal is None:
        equal = ledger.threshold("P-key-realtime", "error_ratio")
    acc = [r for r in h_rows if r["error"] <= equal * dense_error]
    if not acc:
        best = min(h_rows, key=lambda r: r["error"]) if h_rows else None
        msg = "no H variant reached equal accuracy" + (
            f" (best error {best['error']:.3g} vs dense {dense_error:.3g})" if best else "")
        return "not reproduced", msg
    fastest = min(acc, key=lambda r: r["time"])
    measured = (f"dense {dense_time * 1e3:.3g} ms at error {dense_error:.3g}; fastest H variant "
                f"at equal accuracy '{fastest['name']}': {fastest['time'] * 1e3:.3g} ms, error "
                f"{fastest['error']:.3g}")
    return ("reproduced" if fastest["time"] < dense_time else "not reproduced"), measured


def key_ntk(rows: list[dict], key: str = "ntk_change_K"):
    """P-key-ntk: H NTK change below 5 % and the smallest of the four methods at matched memory
    (within the tie of claims.yml, 2 %, counts as the smallest). ``rows``: dicts with method,
    fraction and the relative change."""
    levels = sorted({r["fraction"] for r in rows if r["method"] == H_METHOD}, reverse=True)
    if not levels:
        return "not testable here", "no H-matrix NTK measured"
    tie = ledger.threshold("P-key-ntk", "ntk_tie")
    small = smallest = 0
    lines = []
    for f in levels:
        here = {r["method"]: r[key] for r in rows if r["fraction"] == f and r["method"] in FOUR}
        h = here[H_METHOD]
        best = min(here.items(), key=lambda kv: kv[1])
        small += h < ledger.threshold("P-key-ntk", "ntk_change")
        smallest += best[0] == H_METHOD or h <= best[1] * (1 + tie)
        lines.append(f"@{_pct(f)}: H {_pct(h)}, smallest {best[0]} {_pct(best[1])}")
    measured = "relative NTK change " + "; ".join(lines)
    n = len(levels)
    return ledger.Verdict(_both(small == n, smallest == n), measured)


def mech2_ntk_training(dense_error: float, candidates: list[dict]):
    """P-mech2-ntk-training: every compression that preserves the NTK (change < 5 %, memory <
    dense) fine-tunes to within 2x the dense error. The claim is about a mechanism, so any method
    that preserves the NTK tests it; the text says whether an H-matrix did, and how the
    compressions that moved the NTK more fared. ``candidates``: dicts with name, method,
    ntk_change, memory_fraction, ft_error (unseen error after fine-tuning)."""
    ntk_max = ledger.threshold("P-mech2-ntk-training", "ntk_change")
    e_max = ledger.threshold("P-mech2-ntk-training", "error_ratio")
    small = [c for c in candidates if c["memory_fraction"] < 1]
    preserving = [c for c in small if c["ntk_change"] < ntk_max]
    moved = [c for c in small if c["ntk_change"] >= ntk_max]
    h_preserving = [c for c in preserving if c.get("method") == H_METHOD]

    def say(c):
        return (f"'{c['name']}' (NTK change {_pct(c['ntk_change'])}): {c['ft_error']:.3g}, "
                f"{c['ft_error'] / dense_error:.2f}x dense")

    h = [c for c in small if c.get("method") == H_METHOD]
    h_note = ""
    if h and not any(c in preserving for c in h):
        least = min(h, key=lambda c: c["ntk_change"])
        h_note = (f"; no H-matrix compression preserved the NTK (smallest change "
                  f"{_pct(least['ntk_change'])}), so the mechanism is tested on other methods")
    if not preserving:
        return ledger.Verdict("not testable here", "no compression below dense memory kept the "
                              f"NTK change under {100 * ntk_max:g} %{h_note}")
    quals = []
    if h_preserving:  # the paper's compression decides when it preserves the NTK
        preserving = h_preserving
    else:
        quals = ["shown by another method: " + ", ".join(sorted({c["name"] for c in preserving}))]
    ok = [c for c in preserving if c["ft_error"] <= e_max * dense_error]
    measured = (f"error after fine-tuning (dense {dense_error:.3g}), NTK-preserving: "
                + "; ".join(say(c) for c in preserving))
    if moved:
        best = min(moved, key=lambda c: c["ft_error"])
        measured += f"; best of the {len(moved)} that moved the NTK by >= 5 %: {say(best)}"
    return ledger.Verdict(_ok(len(ok) == len(preserving)), measured + h_note,
                          qualifiers=quals)


def complexity_knlogn(kernel_slope: float, weight_slopes: dict):
    """P-complexity-knlogn: storage slope <= 1.3 for the smooth kernel; weights reported."""
    thr = ledger.threshold("P-complexity-knlogn", "storage_slope")
    w = ", ".join(f"{k} {v:.2f}" for k, v in weight_slopes.items())
    measured = (f"storage slope: smooth kernel {kernel_slope:.2f} (criterion <= {thr:g}); "
                f"weight matrices: {w}")
    above = [k for k, v in weight_slopes.items() if v > thr]
    quals = ["on a substitute: a smooth kernel matrix for the weight matrices"
             + (f" (slope above {thr:g} for {len(above)} of {len(weight_slopes)} weight "
                "families)" if above else "")]
    return ledger.Verdict(_ok(kernel_slope <= thr), measured, value=kernel_slope,
                          qualifiers=quals)


def key_training_efficiency(epoch_ratios, product_slope: float):
    """P-key-training-efficiency: H-structured training no slower than dense (the 95 % interval
    of the median paired-round epoch-time ratio, ``pinn.epoch_time_ratios``, against the tie
    threshold of claims.yml: reproduced at or below it, not reproduced above it, inconclusive
    across it), and product time growing slower than n^2 (fitted slope < 2)."""
    t_max = ledger.threshold("P-key-training-efficiency", "epoch_time_ratio")
    med, lo, hi = median_interval(epoch_ratios)
    v_train = ledger.decide((lo, hi), "<=", t_max)
    ok_prod = product_slope < ledger.threshold("P-key-training-efficiency", "product_slope")
    measured = (f"epoch time H-structured / dense {med:.2f}x [{lo:.2f}, {hi:.2f}] (median of "
                f"{len(epoch_ratios)} paired rounds, 95 %; no slower means <= {t_max:g}x: "
                f"{v_train}); H product time slope {product_slope:.2f} in n (below 2: "
                "sublinear in the n^2 weights)")
    return ledger.Verdict(ledger.combine(v_train, _ok(ok_prod)), measured, value=med,
                          interval=(lo, hi))


def exp3_cnn(dense_acc: float, rows: list[dict], n_test: int | None = None):
    """P-exp3-cnn: top-1 loss <= 1 point at <= 50 % of the dense layers' storage (thresholds
    of claims.yml), with a 95 % interval over ``n_test`` test images: paired where a row has
    ``acc_changed`` / ``ft_acc_changed`` = (images only dense gets right, images only H gets
    right), else unpaired (:func:`hmatbook.thesis.top1_gap`, conservative); reached only after
    fine-tuning: reproduced, qualified "only after fine-tuning". ``rows``: dicts with
    memory_fraction, acc and optionally ft_acc."""
    from .thesis import top1_gap

    l_max = ledger.threshold("P-exp3-cnn", "loss_pts")
    m_max = ledger.threshold("P-exp3-cnn", "memory")
    small = [r for r in rows if r["memory_fraction"] <= m_max]
    if not small:
        return ledger.Verdict("not testable here", f"no H compression at <= {100 * m_max:g} % "
                              "storage was run")
    best = max(small, key=lambda r: r["acc"])

    def gap(row, key):  # paired over the test images when the row says which images changed
        counts = row.get(f"{key}_changed")
        if counts is not None and n_test:
            from .imagenet import paired_difference

            return paired_difference(int(counts[0]), int(counts[1]), int(n_test))
        return top1_gap(dense_acc, row[key], n_test)

    loss = gap(best, "acc")
    v = ledger.decide(loss[1:], "<=", l_max)
    measured = (f"dense {dense_acc:.2f} %; H at {_pct(best['memory_fraction'])} storage: "
                f"{best['acc']:.2f} % (loss {loss[0]:.2f} [{loss[1]:.2f}, {loss[2]:.2f}] "
                f"points; criterion <= {l_max:g})")
    if v == "reproduced":
        return ledger.Verdict(v, measured, value=loss[0], interval=loss[1:])
    ft = [r for r in small if r.get("ft_acc") is not None]
    if ft:
        b = max(ft, key=lambda r: r["ft_acc"])
        ft_loss = gap(b, "ft_acc")
        v_ft = ledger.decide(ft_loss[1:], "<=", l_max)
        measured += (f"; after fine-tuning {b['ft_acc']:.2f} % (loss {ft_loss[0]:.2f} "
                     f"[{ft_loss[1]:.2f}, {ft_loss[2]:.2f}])")
        if v_ft == "reproduced":
            return ledger.Verdict(v_ft, measured, value=ft_loss[0], interval=ft_loss[1:],
                                  qualifiers=["only after fine-tuning"])
        if "inconclusive" in (v, v_ft):
            v = "inconclusive"
    return ledger.Verdict(v, measured, value=loss[0], interval=loss[1:])


def check_navier_stokes(dense_error: float, rows: list[dict], error_key: str = "test_error"):
    """P-check-navier-stokes: H error within 2x of dense at <= 50 % memory, and the best of the
    four methods there (within the tie of claims.yml, 2 %, counts as the best). ``rows``:
    compare_methods rows (Kovasznay)."""
    e_max = ledger.threshold("P-check-navier-stokes", "error_ratio")
    m_max = ledger.threshold("P-check-navier-stokes", "memory")
    tie = ledger.threshold("P-check-navier-stokes", "error_tie")
    h = [r for r in rows if r["method"] == H_METHOD and r.get("reachable", True)
         and r["memory_fraction"] <= m_max]
    if not h:
        return ledger.Verdict("not testable here",
                              f"no H compression at <= {100 * m_max:g} % memory was run")
    best_h = min(h, key=lambda r: r[error_key])
    f = best_h["fraction"]
    others = [r for r in rows if r["fraction"] == f and r["method"] in FOUR
              and r["method"] != H_METHOD and r.get("reachable", True)]
    best_o = min(others, key=lambda r: r[error_key]) if others else None
    ok_err = best_h[error_key] <= e_max * dense_error
    ok_best = best_o is None or best_h[error_key] <= best_o[error_key] * (1 + tie)
    measured = (f"dense error {dense_error:.3g}; H at {_pct(best_h['memory_fraction'])} memory: "
                f"{best_h[error_key]:.3g} ({best_h[error_key] / dense_error:.2f}x)")
    if best_o is not None:
        measured += f"; best other method there: {best_o['method']} {best_o[error_key]:.3g}"
    return ledger.Verdict(_both(ok_err, ok_best), measured,
                          value=best_h[error_key] / dense_error)


def check_ablation(rows_by_problem: dict, error_key: str = "test_error"):
    """P-check-ablation: the adaptive error-bounded H-matrix against the same H-matrix with one
    fixed rank (``hmatrix_rank``: rank selection and error bound removed) at each matched memory
    level: lower by more than the tie of claims.yml everywhere, or not."""
    tie = ledger.threshold("P-check-ablation", "error_tie")
    steps, lines = [], []
    for problem, rows in rows_by_problem.items():
        for f in sorted({r["fraction"] for r in rows if r["method"] == H_METHOD}, reverse=True):
            here = {r["method"]: r[error_key] for r in rows if r["fraction"] == f
                    and r["method"] in (H_METHOD, "hmatrix_rank") and r.get("reachable", True)}
            if len(here) < 2:
                continue
            h, k = here[H_METHOD], here["hmatrix_rank"]
            v = ("reproduced" if h < k * (1 - tie) else
                 "not reproduced" if h > k * (1 + tie) else "inconclusive")
            steps.append(v)
            lines.append(f"{problem} @{_pct(f)}: adaptive {h:.3g} vs fixed rank {k:.3g} ({v})")
    if not steps:
        return ledger.Verdict("not testable here", "no level with both the adaptive and the "
                              "fixed-rank H-matrix")
    return ledger.Verdict(ledger.combine(*steps), "unseen-point error: " + "; ".join(lines))


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
