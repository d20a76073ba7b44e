"""The claims ledger: every claim of both papers (``data/claims.yml``) and the verdicts that the
notebooks compute in a run.

A notebook calls :func:`record` with a verdict it computed; the verdicts of one book build are
JSON files in :func:`results_dir` (``$HMAT_RESULTS_DIR``, set by ``nox -s book``), and the ledger
page joins them with the claims. Nothing here stores a verdict in git.

Vocabulary: a verdict is one of :data:`VERDICTS`; "inconclusive" means the measurement's interval
straddles the criterion (see :func:`decide`). What qualifies a verdict goes beside it, as
:data:`QUALIFIERS` (e.g. ``"on a substitute: MobileNetV2 for GoogLeNet"``), never into the verdict.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from .paths import repo_data

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not testable here",
            "not yet tested", "partly reproduced")
# "partly reproduced" is kept only until every verdict function says what qualifies it instead.
QUALIFIERS = ("on a substitute", "by construction", "only after fine-tuning",
              "shown by another method")
COMPARISONS = (">", ">=", "<", "<=")
RESULTS_ENV = "HMAT_RESULTS_DIR"


def load_claims(path: Path | str | None = None) -> list[dict]:
    """The claims, in file order; each has id, source, section, claim, metric, criterion, part
    (default file: the repository's ``data/claims.yml``)."""
    with open(repo_data("claims.yml") if path is None else path, encoding="utf-8") as f:
        return yaml.safe_load(f)["claims"]


def results_dir() -> Path:
    """Folder for this run's verdicts: ``$HMAT_RESULTS_DIR`` or ``./hmat-results``."""
    path = Path(os.environ.get(RESULTS_ENV, "hmat-results")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def decide(interval: Sequence[float], comparison: str, threshold: float) -> str:
    """Verdict for the claim "value <comparison> threshold" from a confidence ``interval``
    (lo, hi) of the value: reproduced when the whole interval satisfies it, not reproduced when
    none of it does, inconclusive when it straddles the threshold."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")
    lo, hi = _check_interval(interval)
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    t = float(threshold)
    if comparison in (">", ">="):
        holds_all = lo > t if comparison == ">" else lo >= t
        holds_none = hi <= t if comparison == ">" else hi < t
    else:
        holds_all = hi < t if comparison == "<" else hi <= t
        holds_none = lo >= t if comparison == "<" else lo > t
    return "reproduced" if holds_all else "not reproduced" if holds_none else "inconclusive"


def _check_interval(interval) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"interval must be a pair (lo, hi) of numbers, got {interval!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"interval must be finite with lo <= hi, got {interval!r}")
    return lo, hi


def _check_qualifiers(qualifiers) -> list[str]:
    if isinstance(qualifiers, str):
        qualifiers = (qualifiers,)
    out = []
    for q in qualifiers:
        kind = str(q).split(":", 1)[0].strip()
        if kind not in QUALIFIERS:
            raise ValueError(f"qualifiers must start with one of {QUALIFIERS} (optionally "
                             f"followed by ': detail'), got {q!r}")
        out.append(str(q))
    return out


def record(claim_id: str, verdict: str, measured: str, where: str, *,
           value: float | None = None, interval: Sequence[float] | None = None,
           qualifiers: Sequence[str] = ()) -> dict:
    """Store the verdict for one claim, computed in this run.

    ``measured`` says what was measured (numbers), ``where`` the notebook that tested it;
    ``value`` is the measured quantity the criterion compares, ``interval`` its 95 % interval
    (lo, hi) where the metric has noise, ``qualifiers`` what qualifies the verdict
    (:data:`QUALIFIERS`, each optionally with ``": detail"``).
    """
    ids = {c["id"] for c in load_claims()}
    if claim_id not in ids:
        raise ValueError(f"unknown claim_id {claim_id!r}; the claims are listed in "
                         f"{repo_data('claims.yml')}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    if value is not None and not math.isfinite(float(value)):
        raise ValueError(f"value must be a finite number or None, got {value!r}")
    entry = {"id": claim_id, "verdict": verdict, "measured": str(measured), "where": str(where),
             "value": None if value is None else float(value),
             "interval": None if interval is None else list(_check_interval(interval)),
             "qualifiers": _check_qualifiers(qualifiers)}
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", claim_id) + ".json"
    (results_dir() / name).write_text(json.dumps(entry, indent=1), encoding="utf-8")
    return entry


def collect(path: Path | None = None) -> dict[str, dict]:
    """All verdicts recorded in this run, by claim id."""
    folder = Path(path) if path is not None else results_dir()
    out = {}
    for f in sorted(folder.glob("*.json")):
        entry = json.loads(f.read_text(encoding="utf-8"))
        out[entry["id"]] = entry
    return out


def table(path: Path | None = None) -> list[dict]:
    """Claims joined with this run's verdicts; untested claims say "not yet tested"."""
    found = collect(path)
    rows = []
    for c in load_claims():
        v = found.get(c["id"], {})
        rows.append({**c, "verdict": v.get("verdict", "not yet tested"),
                     "measured": v.get("measured", ""), "where": v.get("where", ""),
                     "value": v.get("value"), "interval": v.get("interval"),
                     "qualifiers": v.get("qualifiers", [])})
    return rows
