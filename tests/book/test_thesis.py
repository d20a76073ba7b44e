"""Part I experiment helpers: thesis reference table, variants, and claim verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from hmatbook import ledger
from hmatbook import thesis as th


def test_thesis_table1_read_off_the_text():
    rows = th.thesis_table1()
    assert len(rows) == 9
    by = {(r["model"], r["rank"]): r for r in rows}
    assert by[("googlenet", 30)]["time_saving_pct"] == 43.89  # also the abstract's headline
    assert by[("googlenet", 30)]["accuracy_loss_pct"] == 5.69
    assert by[("resnet", 70)]["time_saving_pct"] == 4.02
    assert all("Table I" in r["source"] for r in rows)
    # every Table I row has a claim in the ledger
    ids = {c["id"] for c in ledger.load_claims()}
    for r in rows:
        assert f"T1-{r['model']}-r{r['rank']}" in ids
    assert th.thesis_model("resnet18") == "resnet"


def _layer(m=96, n=80, n_img=200, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((m, n)).astype(np.float32)
    b = np.zeros(m, np.float32)
    X = rng.standard_normal((n_img, n)).astype(np.float32)
    labels = np.argmax(X @ W.T, axis=1)  # the dense layer is always right
    return th.Layer("toy", "toy", W, b, X, labels, None, {})


def test_evaluate_variants_and_global_svd():
    layer = _layer()
    assert layer.dense_top1_count == layer.n_images
    rows = []
    for v in ({"method": "svd", "rank": 4, "leaf_size": 16},
              {"method": "svd", "tol": 0.5, "adaptive": True},
              {"method": "svd", "rank": 4, "leaf_size": 16, "cluster": "data"},
              {"family": "global_svd", "rank": 10}):
        rows.append(th.evaluate(layer, v, n_products=20, rounds=2))
    for r in rows:
        assert 0 < r["storage_ratio"] and 0 <= r["top1_pct"] <= 100
        assert r["loss_pts"] >= 0 and np.isfinite(r["time_saving_pct"])
    assert rows[1]["rel_error_fro"] <= 0.5 + 1e-9
    assert rows[3]["family"] == th.GLOBAL_SVD and rows[3]["variant"] == "global SVD k=10"
    assert rows[0]["variant"] == "H SVD r=4" and "data-ordered" in rows[2]["variant"]
    g = th.GlobalSVD(layer.W, 80)
    np.testing.assert_allclose(g @ layer.features[0], layer.W @ layer.features[0], atol=1e-3)
    with pytest.raises(ValueError, match="unknown variant keys"):
        th.approximate(layer.W, {"rank": 2, "colour": "red"})
    with pytest.raises(ValueError, match="family"):
        th.approximate(layer.W, {"family": "pruning"})


def test_pareto_front_and_interpolation():
    cost = [1, 2, 3, 4, 2.5]
    value = [10, 12, 11, 20, 12]
    assert th.pareto_front(cost, value).tolist() == [0, 1, 3]
    out = th.interp_at_storage([0.2, 0.4, 0.6], [50, 60, 70], [0.3, 0.1, 0.6])
    assert out[0] == pytest.approx(55) and np.isnan(out[1]) and out[2] == 70


def test_verdict_table1():
    v, text = th.verdict_table1(50.0, 8.0, 10.0, 54.56, 8.56)
    assert v == "reproduced" and "54.56" in text
    assert th.verdict_table1(-100.0, 8.0, 10.0, 54.56, 8.56)[0] == "partly reproduced"
    assert th.verdict_table1(-100.0, 30.0, 40.0, 54.56, 8.56)[0] == "not reproduced"
    # the loss may match as relative loss only
    assert th.verdict_table1(50.0, 1.0, 5.0, 54.56, 8.56)[0] == "reproduced"


def test_verdicts_of_the_text_claims():
    assert th.verdict_abstract_time({"m": {30: 10.0, 50: 6.0}})[0] == "reproduced"
    assert th.verdict_abstract_time({"m": {30: 10.0, 50: 1.0}})[0] == "partly reproduced"
    assert th.verdict_abstract_time({})[0] == "not testable here"
    rows = {"m": {30: (50, 8), 50: (30, 4), 70: (10, 2)}}
    assert th.verdict_tradeoff(rows)[0] == "reproduced"
    rows = {"m": {30: (50, 8), 50: (60, 4), 70: (10, 2)}}
    assert th.verdict_tradeoff(rows)[0] == "partly reproduced"
    assert th.verdict_model_dependent({"m": (1, 2)})[0] == "not testable here"
    assert th.verdict_model_dependent({"a": (50, 2), "b": (30, 2)})[0] == "reproduced"
    assert th.verdict_fig2_order({"svd": 1.0, "rrqr": 1.02, "aca": 1.5})[0] == "reproduced"
    assert th.verdict_fig2_order({"svd": 2.0, "rrqr": 1.0, "aca": 1.5})[0] == "partly reproduced"
    v, text = th.verdict_fig2_order({"svd": 1.0, "rrqr": 1.01, "aca": 0.99})
    assert v == "partly reproduced" and "tied" in text  # a tie is no order
    ranks = [5, 10, 20, 30, 50]
    t = {"svd": [1, 1, 1, 1, 1], "rrqr": [1.01, 1, 1, 1.2, 1.3], "aca": [1, 1, 1, 1.5, 1.6]}
    assert th.verdict_fig2_close(ranks, t)[0] == "reproduced"
    flat = {"svd": [1] * 5, "rrqr": [1.04] * 5, "aca": [1.045] * 5}  # close everywhere
    assert th.verdict_fig2_close(ranks, flat)[0] == "partly reproduced"
    assert th.verdict_fig2_close([5, 10], {k: v[:2] for k, v in t.items()})[0] == \
        "not testable here"
    assert th.verdict_fig2_monotone(ranks, [1, 2, 3, 4, 5])[0] == "reproduced"
    assert th.verdict_fig2_monotone(ranks, [5, 4, 3, 2, 1])[0] == "not reproduced"


def test_verdicts_of_storage_and_accuracy():
    ranks = [10, 50, 70, 100]
    nb = {"svd": [10, 50, 70, 90], "rrqr": [10, 50, 70, 90], "aca": [10, 60, 97, 99]}
    ratio = {k: np.asarray(v) / 100 for k, v in nb.items()}
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == "reproduced"
    assert th.verdict_fig3_svd_qr_equal(ranks, nb)[0] == "reproduced"
    assert th.verdict_fig3_aca_least(ranks, nb, 100)[0] == "reproduced"
    nb["aca"] = [10, 50, 97, 99]  # never less than SVD, but equal is not "least compression"
    assert th.verdict_fig3_aca_least(ranks, nb, 100)[0] == "reproduced"
    nb["aca"] = nb["svd"]
    v, text = th.verdict_fig3_aca_least(ranks, nb, 100)
    assert v == "not reproduced" and "==" in text
    assert th.verdict_fig4_order({"svd": 70, "rrqr": 65, "aca": 10})[0] == "reproduced"
    assert th.verdict_fig4_drop([1, 50, 100], [30, 3, 1])[0] == "reproduced"
    v, text = th.verdict_fig4_drop([1, 50, 70], [30, 3, 1])
    assert v == "reproduced" and "highest rank" in text
    assert th.verdict_qr_close([30, 50, 70], [70, 71, 72], [69, 70, 71])[0] == "reproduced"
    assert th.verdict_qr_close([30, 50, 70], [70, 71, 72], [72, 70, 71])[0] == \
        "partly reproduced"
    assert th.verdict_aca_weak([30, 50, 70], [70, 71, 72], [10, 20, 30])[0] == "reproduced"
    assert th.verdict_aca_weak([10], [70], [10])[0] == "not testable here"


def test_verdicts_over_all_variants():
    rows = [{"variant": "a", "family": "H", "time_saving_pct": 30, "loss_pts": 1.0,
             "storage_ratio": 0.5, "n_lowrank": 3, "n_dense": 2},
            {"variant": "b", "family": "H", "time_saving_pct": 50, "loss_pts": 5.0,
             "storage_ratio": 0.3, "n_lowrank": 3, "n_dense": 2}]
    assert th.verdict_suitable(rows)[0] == "reproduced"
    rows[0]["loss_pts"] = 3.0
    assert th.verdict_suitable(rows)[0] == "partly reproduced"
    for r in rows:
        r["time_saving_pct"] = -10
    assert th.verdict_suitable(rows)[0] == "not reproduced"
    assert th.verdict_accuracy_decreases(rows, 1300)[0] == "reproduced"
    # one image better than dense (4 fixed, 3 broken): within the noise
    rows[0].update(loss_pts=-100 / 1300, fixed=4, broken=3)
    assert th.verdict_accuracy_decreases(rows, 1300)[0] == "partly reproduced"
    rows[0].update(loss_pts=-1300 / 1300, fixed=14, broken=1)  # a significant gain
    v, text = th.verdict_accuracy_decreases(rows, 1300)
    assert v == "not reproduced" and "significant" in text
    # an adaptive build that kept one global block does not count as an H-matrix
    one = {"variant": "H SVD adaptive tol=0.4", "family": "H adaptive (certified tol)",
           "time_saving_pct": 40, "loss_pts": 1.0, "storage_ratio": 0.4, "n_lowrank": 1,
           "n_dense": 0}
    v, text = th.verdict_suitable(rows + [one])
    assert v == "not reproduced" and "1 of which would qualify" in text


def test_parse_ranks():
    assert th.parse_ranks("1..5") == [1, 2, 3, 4, 5]
    assert th.parse_ranks("1..100:25") == [1, 26, 51, 76]
    assert th.parse_ranks([30, 10, 30]) == [10, 30]
    for bad in ("1-5", [0, 3], []):
        with pytest.raises(ValueError, match="ranks"):
            th.parse_ranks(bad)


def test_storage_without_fallback_counts_every_admissible_block_in_low_rank():
    import hmat

    W = np.random.default_rng(2).standard_normal((128, 96)).astype(np.float32)
    H1 = hmat.compress(W, rank=1, leaf_size=16)
    lr, dn = H1.lr_desc, H1.d_desc
    data_bytes = 4 * (int(np.sum(lr[:, 4] * (lr[:, 1] + lr[:, 3])))
                      + int(np.sum(dn[:, 1] * dn[:, 3])))
    assert th.storage_without_fallback(H1, [1])[0] == data_bytes
    big = th.storage_without_fallback(H1, [1, 8, 64])
    assert big[0] < big[1] < big[2]
    # at a high rank hmat's own build falls back to dense blocks and stores less
    H64 = hmat.compress(W, rank=64, leaf_size=16)
    assert H64.nbytes - H64.lr_desc.nbytes - H64.d_desc.nbytes < big[2]


def test_family_labels():
    assert th.family_of({"rank": 3}) == "H fixed rank (SVD)"
    assert th.family_of({"rank": 3, "method": "aca"}) == "H fixed rank (ACA)"
    assert th.family_of({"tol": 0.5, "adaptive": True}) == "H adaptive (certified tol)"
    assert th.family_of({"tol": 0.5}) == "H per-block tol"
    assert th.family_of({"rank": 3, "cluster": "data"}) == "H data-ordered, fixed rank"
    assert th.family_of({"rank": 3, "admissibility": "weak"}) == "H weak admissibility, fixed rank"
    assert th.family_of({"family": "global_svd", "rank": 3}) == th.GLOBAL_SVD


def test_first_available_layer_reports_missing_models(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from hmatbook import imagenet as im

    monkeypatch.setattr(im, "_hub_checkpoints", lambda: tmp_path / "no-hub")
    layer, skipped = th.first_available_layer(["googlenet", "resnet18"], data_dir=tmp_path,
                                              with_features=False)
    assert layer is None
    assert [n for n, _ in skipped] == ["googlenet", "resnet18"]
    assert all("allow_download=True" in why for _, why in skipped)
