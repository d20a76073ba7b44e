"""hmatbook.ledger: claims from data/claims.yml, verdicts recorded in a run and joined with them."""

from __future__ import annotations

import json

import pytest

from hmatbook import ledger


def test_ledger_table_without_results_says_not_yet_tested(tmp_path):
    rows = ledger.table(tmp_path)
    assert {r["verdict"] for r in rows} == {"not yet tested"}
    ledger_rows = {r["id"]: r for r in rows}
    assert len(ledger_rows) == len(rows)


def test_record_writes_a_verdict_that_the_table_shows(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    claim = ledger.load_claims()[0]["id"]
    entry = ledger.record(claim, "reproduced", "1.0 vs 1.0", "test")
    assert json.loads(next(tmp_path.glob("*.json")).read_text()) == entry
    row = {r["id"]: r for r in ledger.table()}[claim]
    assert row["verdict"] == "reproduced" and row["where"] == "test"


def test_record_rejects_unknown_claims_and_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="unknown claim_id"):
        ledger.record("no-such-claim", "reproduced", "", "")
    claim = ledger.load_claims()[0]["id"]
    with pytest.raises(ValueError, match="verdict must be one of"):
        ledger.record(claim, "maybe", "", "")
