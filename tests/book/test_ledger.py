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


def test_record_keeps_value_interval_and_qualifiers(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    claim = ledger.load_claims()[0]["id"]
    entry = ledger.record(claim, "inconclusive", "0.5 [-0.1, 1.1]", "test", value=0.5,
                          interval=(-0.1, 1.1),
                          qualifiers=["on a substitute: MobileNetV2 for GoogLeNet"])
    row = {r["id"]: r for r in ledger.table()}[claim]
    assert row["interval"] == [-0.1, 1.1] and row["value"] == 0.5
    expected = ["on a substitute: MobileNetV2 for GoogLeNet"]
    assert row["qualifiers"] == entry["qualifiers"] == expected
    with pytest.raises(ValueError, match="qualifiers must start with one of"):
        ledger.record(claim, "reproduced", "", "", qualifiers=["partly"])
    with pytest.raises(ValueError, match="interval must be"):
        ledger.record(claim, "reproduced", "", "", interval=(2.0, 1.0))


@pytest.mark.parametrize("interval, comparison, threshold, verdict", [
    ((0.1, 0.3), ">", 0.0, "reproduced"),
    ((-0.3, -0.1), ">", 0.0, "not reproduced"),
    ((-0.1, 0.3), ">", 0.0, "inconclusive"),
    ((0.0, 0.3), ">", 0.0, "inconclusive"),
    ((0.0, 0.3), ">=", 0.0, "reproduced"),
    ((1.0, 2.0), "<", 3.0, "reproduced"),
    ((3.5, 4.0), "<", 3.0, "not reproduced"),
    ((2.0, 4.0), "<=", 3.0, "inconclusive"),
    ((3.0, 4.0), "<=", 3.0, "inconclusive"),
    ((3.0, 4.0), "<", 3.0, "not reproduced"),
])
def test_decide_reads_the_interval_against_the_threshold(interval, comparison, threshold, verdict):
    assert ledger.decide(interval, comparison, threshold) == verdict


def test_decide_rejects_bad_input():
    with pytest.raises(ValueError, match="comparison must be one of"):
        ledger.decide((0, 1), "=>", 0)
    with pytest.raises(ValueError, match="interval must be"):
        ledger.decide((1, 0), ">", 0)
    with pytest.raises(ValueError, match="interval must be"):
        ledger.decide(0.5, ">", 0)
