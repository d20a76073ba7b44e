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
    c = ledger.load_claims()[0]
    claim, nb = c["id"], c["notebook"]
    entry = ledger.record(claim, "reproduced", "1.0 vs 1.0", nb)
    assert json.loads(next(tmp_path.glob("*.json")).read_text()) == entry
    row = {r["id"]: r for r in ledger.table()}[claim]
    assert row["verdict"] == "reproduced" and row["where"] == nb


def test_record_rejects_unknown_claims_and_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="unknown claim_id"):
        ledger.record("no-such-claim", "reproduced", "", "")
    c = ledger.load_claims()[0]
    with pytest.raises(ValueError, match="verdict must be one of"):
        ledger.record(c["id"], "maybe", "", c["notebook"])
    with pytest.raises(ValueError, match="one notebook per claim"):
        ledger.record(c["id"], "reproduced", "", "some_other_notebook")


def test_record_keeps_value_interval_and_qualifiers(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    c = ledger.load_claims()[0]
    claim, nb = c["id"], c["notebook"]
    entry = ledger.record(claim, "inconclusive", "0.5 [-0.1, 1.1]", nb, value=0.5,
                          interval=(-0.1, 1.1),
                          qualifiers=["on a substitute: MobileNetV2 for GoogLeNet"])
    row = {r["id"]: r for r in ledger.table()}[claim]
    assert row["interval"] == [-0.1, 1.1] and row["value"] == 0.5
    expected = ["on a substitute: MobileNetV2 for GoogLeNet"]
    assert row["qualifiers"] == entry["qualifiers"] == expected
    with pytest.raises(ValueError, match="qualifiers must start with one of"):
        ledger.record(claim, "reproduced", "", nb, qualifiers=["partly"])
    with pytest.raises(ValueError, match="interval must be"):
        ledger.record(claim, "reproduced", "", nb, interval=(2.0, 1.0))


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


@pytest.mark.parametrize("band, verdict", [
    ((0.0, 2.0), "reproduced"), ((3.0, 4.0), "not reproduced"), ((1.0, 4.0), "inconclusive"),
])
def test_decide_band(band, verdict):
    assert ledger.decide_band((0.5, 1.5), *band) == verdict


def test_combine_has_no_partly():
    assert ledger.combine("reproduced", "reproduced") == "reproduced"
    assert ledger.combine("reproduced", "not reproduced") == "not reproduced"
    assert ledger.combine("inconclusive", "reproduced") == "inconclusive"
    assert ledger.combine("not testable here", "reproduced") == "not testable here"
    assert ledger.combine("not testable here", "not reproduced") == "not reproduced"
    with pytest.raises(ValueError, match="verdict must be one of"):
        ledger.combine("partly reproduced")
    assert "partly reproduced" not in ledger.VERDICTS


def test_verdict_unpacks_as_a_pair_and_records_its_extras(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    c = ledger.load_claims()[0]
    v = ledger.Verdict("inconclusive", "x", value=1.0, interval=(0.0, 2.0),
                       qualifiers=["by construction"])
    verdict, text = v
    assert (verdict, text) == ("inconclusive", "x")
    entry = ledger.record_verdict(c["id"], v.qualified("on a substitute: MobileNetV2"),
                                  c["notebook"], note=" [note]")
    assert entry["measured"] == "x [note]" and entry["interval"] == [0.0, 2.0]
    assert entry["qualifiers"] == ["by construction", "on a substitute: MobileNetV2"]


def test_thresholds_are_read_from_the_file():
    c = ledger.claim("T1-mobilenet_v2-r30")
    assert ledger.threshold(c["id"], "loss_pts") == [4.28, 17.12]
    assert "time_saving_pct in [39.56, 69.56] %" in ledger.criterion_as_data(c)
    with pytest.raises(KeyError, match="no test quantity"):
        ledger.test_of(c["id"], "nothing")


def test_glance_lists_every_claim_with_the_profile(tmp_path):
    rows = ledger.table(tmp_path)
    page = ledger.glance_html(rows, "quick")
    assert "quick" in page and "indicative" in page
    assert all(r["id"] in page for r in rows)
    assert page.count("<tr>") == len(rows) + 1
    assert "href='notebooks/part1_table1.html'" in page


def test_every_criterion_in_the_file_is_read_by_the_verdict_code():
    """Each test quantity of a claim that a notebook records is looked up by name in the book's
    code (ledger.threshold / test_of), so the file and the verdict code cannot drift apart."""
    from pathlib import Path

    import hmatbook

    code = "\n".join(p.read_text(encoding="utf-8")
                     for p in Path(hmatbook.__file__).parent.glob("*.py"))
    for c in ledger.load_claims():
        if not c.get("notebook") or not c.get("test"):
            continue
        if not c["id"].startswith("T1-"):  # Table I ids are built per model and rank
            assert c["id"] in code, f"{c['id']}: no verdict code names this claim"
        for name in c["test"]:
            assert f'"{name}"' in code, f"{c['id']}: test quantity {name!r} is read nowhere"
