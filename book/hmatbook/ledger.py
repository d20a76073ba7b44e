"""The claims ledger: every claim of both papers (``data/claims.yml``) and the verdicts that the
notebooks compute in a run.

A notebook calls :func:`record` with a verdict it computed; the verdicts of one book build are
JSON files in :func:`results_dir` (``$HMAT_RESULTS_DIR``, set by ``nox -s book``), and the ledger
page joins them with the claims. Nothing here stores a verdict in git.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from .paths import repo_data

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable here",
            "not yet tested")
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


def record(claim_id: str, verdict: str, measured: str, where: str) -> dict:
    """Store the verdict for one claim, computed in this run.

    ``measured`` says what was measured (numbers), ``where`` the notebook that tested it.
    """
    ids = {c["id"] for c in load_claims()}
    if claim_id not in ids:
        raise ValueError(f"unknown claim_id {claim_id!r}; the claims are listed in "
                         f"{repo_data('claims.yml')}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    entry = {"id": claim_id, "verdict": verdict, "measured": str(measured), "where": str(where)}
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
                     "measured": v.get("measured", ""), "where": v.get("where", "")})
    return rows
