"""The claims ledger: every claim of both papers (``data/claims.yml``) and the verdicts that the
notebooks compute in a run.

A notebook calls :func:`record` with a verdict it computed; the verdicts of one book build are
JSON files in :func:`results_dir` (``$HMAT_RESULTS_DIR``, set by ``nox -s book``), and the ledger
page joins them with the claims. Nothing here stores a verdict in git.

Vocabulary: a verdict is one of :data:`VERDICTS`; "inconclusive" means the measurement's interval
straddles the criterion (see :func:`decide`). What qualifies a verdict goes beside it, as
:data:`QUALIFIERS` (e.g. ``"on a substitute: MobileNetV2 for GoogLeNet"``), never into the verdict.
The criterion the book shows is generated from the claim's data (:func:`criterion_text`), the
same data the verdict functions read (:func:`threshold`).
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
            "not yet tested")
QUALIFIERS = ("on a substitute", "by construction", "only after fine-tuning",
              "shown by another method")
COMPARISONS = (">", ">=", "<", "<=")
RESULTS_ENV = "HMAT_RESULTS_DIR"


def load_claims(path: Path | str | None = None) -> list[dict]:
    """The claims, in file order; each has id, source, section, claim, metric, criterion, part
    (default file: the repository's ``data/claims.yml``)."""
    with open(repo_data("claims.yml") if path is None else path, encoding="utf-8") as f:
        return yaml.safe_load(f)["claims"]


def claim(claim_id: str, claims: list[dict] | None = None) -> dict:
    """One claim of ``data/claims.yml`` by id."""
    for c in load_claims() if claims is None else claims:
        if c["id"] == claim_id:
            return c
    raise ValueError(f"unknown claim_id {claim_id!r}; the claims are listed in "
                     f"{repo_data('claims.yml')}")


def test_of(claim_id: str, name: str | None = None) -> dict:
    """The criterion as data (the claim's ``test`` mapping, or its entry ``name``): the verdict
    functions read their thresholds from here, so the file and the code cannot disagree."""
    test = claim(claim_id).get("test") or {}
    if name is None:
        return test
    if name not in test:
        raise KeyError(f"claim {claim_id!r} has no test quantity {name!r} in claims.yml; "
                       f"it has {sorted(test)}")
    return test[name]


def threshold(claim_id: str, name: str):
    """The threshold of one test quantity of a claim (a number, or [lo, hi] for "in")."""
    return test_of(claim_id, name)["threshold"]


RANK_COMPARISONS = (">", ">=", "<", "<=", "in", "one of")


def ranks_of(claim_id: str, name: str) -> dict:
    """The ranks where one test quantity of a claim is compared (its ``ranks`` entry in
    claims.yml: ``{comparison, threshold}``), checked."""
    spec = test_of(claim_id, name).get("ranks")
    if not isinstance(spec, dict) or spec.get("comparison") not in RANK_COMPARISONS:
        raise ValueError(f"claim {claim_id!r}, test quantity {name!r}: 'ranks' must be "
                         f"{{comparison, threshold}} with comparison one of {RANK_COMPARISONS}, "
                         f"got {spec!r}")
    return spec


def rank_selected(claim_id: str, name: str, ranks) -> list[bool]:
    """Which of ``ranks`` the test quantity ``name`` of a claim is compared at (its ``ranks``
    entry: e.g. ``<= 20``, ``in [30, 70]`` (ends included), ``one of [30, 50, 70]``)."""
    spec = ranks_of(claim_id, name)
    op, t = spec["comparison"], spec["threshold"]
    tests = {">": lambda r: r > t, ">=": lambda r: r >= t, "<": lambda r: r < t,
             "<=": lambda r: r <= t, "in": lambda r: t[0] <= r <= t[1],
             "one of": lambda r: r in t}
    return [bool(tests[op](r)) for r in ranks]


def criterion_as_data(c: dict) -> str:
    """The ``test`` mapping of a claim written out: "time_saving_pct in [39.56, 69.56] %"."""
    parts = []
    for name, t in (c.get("test") or {}).items():
        thr = t["threshold"]
        thr = f"[{thr[0]:g}, {thr[1]:g}]" if isinstance(thr, list) else f"{thr:g}"
        parts.append(f"{name} {t['comparison']} {thr} {t.get('unit', '')}".strip())
    return "; ".join(parts)


ROLES = ("bound", "tie", "tolerance", "selects")
ON_TIE = ("inconclusive", "holds")  # what a tie within a role-"tie" threshold counts as
_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
_OTHER_SIDE = {">": "at or below", ">=": "below", "<": "at or above", "<=": "above"}


def _amount(value: float, unit: str) -> str:
    """A threshold with its unit in words: 0.05 "relative" -> "5 %", 0.5 "fraction of dense"
    -> "50 % of dense", 2 "x dense error" -> "2x dense error"."""
    unit, _, note = (unit or "").strip().partition(": ")
    return _amount_plain(value, unit) + (f" ({note})" if note else "")


def _amount_plain(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:g} %"
    if unit.startswith("relative"):
        return f"{100 * value:g} %"
    if unit.startswith("fraction of "):
        return f"{100 * value:g} % {unit[len('fraction '):]}"
    if unit.startswith("x "):
        return f"{value:g}x {unit[2:]}"
    if unit.split(" ")[0] in ("points", "point"):
        return f"{value:g} {'point' if value == 1 else 'points'}{unit[6:]}"
    return f"{value:g}" if unit in ("", "1") else f"{value:g} ({unit})"


def _band_rule(t: dict) -> str:
    """How a band was derived from the source's value (``band`` in claims.yml), in words."""
    rule = t.get("band") or {}
    if "source_plus_minus" in rule:
        s = f"the source's value \u00b1 {rule['source_plus_minus']:g}"
        return s + (f", not below {rule['floor']:g}" if "floor" in rule else "")
    if "source_factor" in rule:
        f = rule["source_factor"]
        return f"the source's value / {f:g} to x {f:g}"
    return ""


def _relation(t: dict) -> str:
    """ "above 5 %", "in [39.56, 69.56] % (source: 54.56 %; the source's value +- 15)"."""
    unit, thr = t.get("unit", ""), t["threshold"]
    if t["comparison"] == "in":
        lo, hi = (_amount(v, unit) for v in thr)
        suffix = lo[len(f"{thr[0]:g}"):]
        text = f"in [{thr[0]:g}, {thr[1]:g}]{suffix}"
    else:
        text = f"{_WORDS[t['comparison']]} {_amount(thr, unit)}"
    notes = []
    if t.get("source_value") is not None:
        notes.append(f"source: {_amount(t['source_value'], unit)}")
    if _band_rule(t):
        notes.append(_band_rule(t))
    return text + (f" ({'; '.join(notes)})" if notes else "")


def criterion_text(c: dict) -> str:
    """The criterion of a claim as a sentence, generated from its ``test`` data alone (label,
    comparison, threshold, unit, source_value, interval, over, role, order, band, also), so the
    book cannot show a criterion that the verdict code does not apply."""
    test = c.get("test") or {}
    if not test:
        if not c.get("notebook"):
            return "no criterion as data: no notebook tests this claim yet"
        if str(c.get("criterion") or "").startswith("not testable here"):
            return "no criterion as data: the claim is not testable here (its words say why)"
        return ("criterion not yet held as data: the verdict code of "
                f"{c['notebook']} applies it as the words say")
    for name, t in test.items():
        if not str(t.get("label", "")).strip():
            raise ValueError(f"claim {c.get('id')!r}: test quantity {name!r} needs a label "
                             "(the quantity in words) in claims.yml")
        if t.get("role", "bound") not in ROLES:
            raise ValueError(f"claim {c.get('id')!r}: test quantity {name!r} has role "
                             f"{t.get('role')!r}; allowed: {ROLES}")
        if t.get("on_tie", "inconclusive") not in ON_TIE:
            raise ValueError(f"claim {c.get('id')!r}: test quantity {name!r} has on_tie "
                             f"{t.get('on_tie')!r}; allowed: {ON_TIE}")
    entries = list(test.values())
    overs = {t.get("over") for t in entries}
    common = overs.pop() if len(overs) == 1 else None
    some = bool(common) and common.split(" ")[:2] in (["for", "some"], ["at", "some"])

    def where(t):
        return "" if common is not None or not t.get("over") else f" {t['over']}"

    holds, straddle, ties, fails_tie = [], False, [], []
    bounds = [t for t in entries if t.get("role", "bound") == "bound"]
    last_interval = None
    for t in bounds:
        iv = t.get("interval")
        if iv and iv == last_interval:
            holds.append(f"that of the {t['label']} {_relation(t)}{where(t)}")
        elif iv:
            holds.append(f"the {iv} interval of the {t['label']} lies {_relation(t)}{where(t)}")
        else:
            holds.append(f"the {t['label']} is {_relation(t)}{where(t)}")
        straddle = straddle or bool(iv)
        last_interval = iv
    for t in entries:
        role = t.get("role", "bound")
        amount = "" if role == "bound" else _amount(t["threshold"], t.get("unit", ""))
        if role == "tie" and t.get("on_tie", "inconclusive") == "holds":
            holds.append(f"the {t['label']} is ordered {t['order']}{where(t)}, or within "
                         f"{amount} of it (a tie counts as the order holding)")
            fails_tie.append(amount)
        elif role == "tie":
            holds.append(f"the {t['label']} is ordered {t['order']}{where(t)}, each step by "
                         f"more than {amount}")
            ties.append(amount)
        elif role == "tolerance":
            holds.append(f"the {t['label']} (tolerance: {amount}) is {t['order']}{where(t)}")
            ties.append("")
    holds += [str(a) for a in c.get("also") or []]
    selects = [f"{t['label']} {_relation(t)}" for t in entries if t.get("role") == "selects"]
    text = "reproduced when " + (f"among {' and '.join(selects)}, " if selects else "")
    text += " and ".join(holds) + (f", {common}" if common else "")
    one = "it" if len(holds) == 1 else "one"
    fails = []
    bands = all(t["comparison"] == "in" for t in bounds)
    if straddle and all(t.get("interval") for t in bounds):
        side = "outside its band" if bands else "on the other side of its bound"
        fails.append(f"{one} lies wholly {side}")
    elif straddle:
        fails.append("one fails (for an interval: it lies wholly on the other side of its "
                     "bound)")
    elif bounds or not (ties or fails_tie):
        fails.append(f"{one} does not hold")
    for amount in fails_tie:
        fails.append(f"a step goes the other way by more than {amount}")
    for amount in ties:
        fails.append(f"a step goes the other way by more than {amount}" if amount
                     else "another method's value is lower")
    text += "; not reproduced when " + (
        f"every candidate fails ({' or '.join(fails)})" if some else " or ".join(fails))
    inconc = []
    if straddle:
        inconc.append(f"{'it' if one == 'it' else 'an interval'} straddles "
                      + ("an edge of its band" if bands else "its bound"))
    for amount in ties:
        inconc.append(f"a step is a tie (within {amount})" if amount else "on a tie")
    if inconc:
        text += "; inconclusive " + " or ".join(
            x if x.startswith("on ") else f"when {x}" for x in inconc)
    return text


def criterion_html(c: dict) -> str:
    """The criterion for a table cell: the sentence generated from the data
    (:func:`criterion_text`), and below it, in smaller type, the typed ``criterion`` of
    claims.yml labelled "in words" (tests/book/test_ledger.py checks its numbers)."""
    import html

    words = str(c.get("criterion") or "").strip()
    return (html.escape(criterion_text(c)) + (
        f"<br><small class='hmat-in-words'><em>in words:</em> {html.escape(words)}</small>"
        if words else ""))


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


def decide_band(interval: Sequence[float], lo: float, hi: float) -> str:
    """Verdict for the claim "value lies in [lo, hi]" (e.g. within a factor 2 of the source's
    value): reproduced when the whole interval is inside, not reproduced when it is wholly
    outside, inconclusive when it overlaps an edge."""
    a, b = _check_interval(interval)
    if not lo <= hi:
        raise ValueError(f"the band needs lo <= hi, got [{lo}, {hi}]")
    if lo <= a and b <= hi:
        return "reproduced"
    if b < lo or a > hi:
        return "not reproduced"
    return "inconclusive"


def combine(*verdicts: str) -> str:
    """One verdict for a claim with several parts that must all hold: not reproduced if any part
    is not reproduced, reproduced if all are, not testable here if a part cannot be tested,
    inconclusive otherwise. There is no "partly"."""
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {v!r}")
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    if "not reproduced" in verdicts:
        return "not reproduced"
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "not testable here" in verdicts or "not yet tested" in verdicts:
        return "not testable here"
    return "inconclusive"


class Verdict(tuple):
    """``(verdict, measured)`` as the verdict functions return it (it unpacks as a pair), with
    ``value``, ``interval`` and ``qualifiers`` for :func:`record` carried as attributes."""

    def __new__(cls, verdict: str, measured: str, *, value=None, interval=None,
                qualifiers: Sequence[str] = ()):
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        self = super().__new__(cls, (verdict, str(measured)))
        self.value = None if value is None else float(value)
        self.interval = None if interval is None else _check_interval(interval)
        self.qualifiers = tuple(_check_qualifiers(qualifiers))
        return self

    @property
    def verdict(self) -> str:
        return self[0]

    @property
    def measured(self) -> str:
        return self[1]

    def qualified(self, *qualifiers: str) -> Verdict:
        """The same verdict with more qualifiers."""
        return Verdict(self[0], self[1], value=self.value, interval=self.interval,
                       qualifiers=(*self.qualifiers, *qualifiers))


def record_verdict(claim_id: str, verdict, where: str, *, note: str = "",
                   qualifiers: Sequence[str] = ()) -> dict:
    """:func:`record` for a :class:`Verdict` (or a plain ``(verdict, measured)`` pair), with
    ``note`` appended to the measured text and extra ``qualifiers``."""
    v, text = verdict
    return record(claim_id, v, text + note, where, value=getattr(verdict, "value", None),
                  interval=getattr(verdict, "interval", None),
                  qualifiers=(*getattr(verdict, "qualifiers", ()), *qualifiers))


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
    c = claim(claim_id)
    if c.get("notebook") and str(where) != c["notebook"]:
        raise ValueError(f"claim {claim_id!r} is recorded by {c['notebook']!r} (its notebook in "
                         f"claims.yml), not by where={where!r}: one notebook per claim")
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
        quals = list(dict.fromkeys([*(c.get("qualifiers") or []), *v.get("qualifiers", [])]))
        rows.append({**c, "verdict": v.get("verdict", "not yet tested"),
                     "measured": v.get("measured", ""), "where": v.get("where", ""),
                     "value": v.get("value"), "interval": v.get("interval"),
                     "qualifiers": quals, "criterion_data": criterion_as_data(c),
                     "criterion_text": criterion_text(c)})
    return rows


def changed_after_results(c: dict) -> bool:
    """Whether a claim's criterion was ever changed with results in hand (its history says)."""
    return any(h.get("results_known") for h in c.get("history") or [])


def glance_html(rows: list[dict], profile: str, link_prefix: str = "notebooks/") -> str:
    """The "Reproduction at a glance" table as HTML: per claim the source's value, ours with its
    interval, the verdict and its qualifiers, and a link to the page that tests it. Six columns
    of set widths, so that it fits the content column; a criterion changed after results were
    known is marked with a dagger that the note under the table explains."""
    import html

    def esc(x) -> str:
        return html.escape(str(x))

    note = " (indicative sizes, not the papers' scale)" if profile == "quick" else ""
    widths = (16, 24, 14, 14, 20, 12)  # % of the column: claim, source, ours, verdict, ...
    cols = "".join(f"<col style='width:{w}%'>" for w in widths)
    head = ("<tr><th>claim</th><th>the source says</th><th>ours [95 % interval]</th>"
            "<th>verdict</th><th>qualifiers</th><th>page</th></tr>")
    body, changed = [], 0
    for r in rows:
        iv = r.get("interval")
        ours = "" if r.get("value") is None else f"<span class='nw'>{r['value']:.3g}</span>"
        if iv:
            ours += f"<br><span class='nw'>[{iv[0]:.3g}, {iv[1]:.3g}]</span>"
        where = r.get("where") or r.get("notebook")
        page = (f"<a href='{esc(link_prefix + where)}.html'>{esc(where)}</a>" if where
                else "no page yet")
        flag = ""
        if changed_after_results(r):
            changed += 1
            flag = "<sup title='criterion changed after results were known'>&dagger;</sup>"
        body.append(
            f"<tr><td class='id'>{esc(r['id'])}</td>"
            f"<td>{esc(r.get('source_value') or r['claim'])}</td><td class='num'>{ours}</td>"
            f"<td class='verdict'><b>{esc(r['verdict'])}</b>{flag}</td>"
            f"<td>{esc('; '.join(r.get('qualifiers') or []))}</td><td>{page}</td></tr>")
    foot = (f"<p class='hmat-table-note'>&dagger; criterion changed after results were known "
            f"({changed} claims; the ledger page gives the old and new criterion and the "
            "reason).</p>" if changed else "")
    return (f"<p>Profile of this build: <b>{esc(profile)}</b>{esc(note)}</p>"
            f"<table class='hmat-glance'><colgroup>{cols}</colgroup><thead>{head}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>{foot}")
