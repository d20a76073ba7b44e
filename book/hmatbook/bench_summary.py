"""Ratios and verdicts from the JSON of a pytest-benchmark run of ``tests/bench`` (``nox -s
bench``): every number is derived from medians measured in that one run."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["summarize"]


def _median(b) -> float:
    return float(b["stats"]["median"])


def _key(e: dict) -> tuple:
    """Products are compared within one (matrix, dtype, vectors, threads) group."""
    return e["matrix"], e["dtype"], e["p"], e.get("threads")


def summarize(benchmarks: list[dict]) -> dict:
    """Add ``ratio`` / ``gbytes_per_s`` to each product benchmark's ``extra_info`` and return a
    summary: product ratios, the issue's goals, bandwidths, build and scaling results."""
    by_kind = defaultdict(list)
    for b in benchmarks:
        by_kind[b.get("extra_info", {}).get("kind", "other")].append(b)
    out = {}

    # products: ratio to numpy in the same (matrix, dtype, p) group
    numpy_t, numpy_bytes = {}, {}
    for b in by_kind["product"]:
        e = b["extra_info"]
        if e["impl"] == "numpy":
            numpy_t[_key(e)] = _median(b)
            numpy_bytes[_key(e)] = e["nbytes"]
    rows = []
    for b in by_kind["product"]:
        e = b["extra_info"]
        key = _key(e)
        t = _median(b)
        e["median_s"] = t
        e["gbytes_per_s"] = e["nbytes"] / t / 1e9
        if key in numpy_t:
            e["ratio"] = t / numpy_t[key]
            e["bytes_ratio"] = e["nbytes"] / numpy_bytes[key]
        rows.append(dict(e))
    out["products"] = rows
    goals = []
    for r in rows:
        if r["impl"] == "hmat" and r.get("ratio") is not None and r.get("rank") == 30:
            target = 1.25 * r["bytes_ratio"]
            goals.append({"matrix": r["matrix"], "dtype": r["dtype"], "p": r["p"],
                          "threads": r.get("threads"),
                          "ratio": r["ratio"], "bytes_ratio": r["bytes_ratio"],
                          "goal": target, "met": bool(r["ratio"] <= target)})
    out["goals_rank30"] = goals

    out["stream"] = [{**b["extra_info"],
                      "gbytes_per_s": b["extra_info"]["bytes"] / _median(b) / 1e9}
                     for b in by_kind["stream"]]
    out["gemm"] = [{**b["extra_info"], "gflops": b["extra_info"]["flops"] / _median(b) / 1e9}
                   for b in by_kind["gemm"]]

    svd = {b["extra_info"]["matrix"]: _median(b) for b in by_kind["svd"]}
    out["build"] = [{**b["extra_info"], "build_s": _median(b),
                     "ratio_to_svd": _median(b) / svd[b["extra_info"]["matrix"]]
                     if b["extra_info"]["matrix"] in svd else None}
                    for b in by_kind["build"]]

    scal = [{**b["extra_info"], "median_s": _median(b)} for b in by_kind["scaling"]]
    out["scaling"] = scal
    hm = sorted({(s["n"], s["hmat_nbytes"]) for s in scal if s["impl"] == "hmat"})
    if len(hm) >= 2:
        n, nb = np.array(hm, dtype=float).T
        out["storage_slope"] = float(np.polyfit(np.log(n), np.log(nb), 1)[0])
    out["compile"] = [b["extra_info"] for b in by_kind["compile"]]
    out["small_layers"] = [{**b["extra_info"], "median_s": _median(b)}
                           for b in by_kind["small"]]
    out["machine"] = next((b["extra_info"].get("machine") for b in by_kind["machine"]), None)
    return out
