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


R, N, INC, U = "reproduced", "not reproduced", "inconclusive", "not testable here"


def test_verdict_table1_each_outcome():
    cid = "T1-mobilenet_v2-r30"  # bands from claims.yml: time [39.56, 69.56] %, loss [4.28, 17.12]
    v = th.verdict_table1(cid, (50.0, 45.0, 55.0), (8.0, 7.0, 9.0))
    assert v[0] == R and "54.56" in v[1] and v.interval == (45.0, 55.0)
    assert th.verdict_table1(cid, (50.0, 45.0, 55.0), (8.0, 3.0, 9.0))[0] == INC  # loss straddles
    assert th.verdict_table1(cid, (50.0, 35.0, 55.0), (8.0, 7.0, 9.0))[0] == INC  # time straddles
    assert th.verdict_table1(cid, (-44.0, -46.0, -42.0), (8.0, 7.0, 9.0))[0] == N
    assert th.verdict_table1(cid, (50.0, 45.0, 55.0), (1.0, 0.5, 1.5))[0] == N
    # a slowdown never reproduces a time saving, whatever the band's lower edge
    assert th.verdict_table1("T1-resnet-r70", -11.0, 3.85)[0] == N


def test_verdict_abstract_time_each_outcome():
    assert th.verdict_abstract_time({"m": {30: (10.0, 8, 12), 50: 6.0}})[0] == R
    assert th.verdict_abstract_time({"m": {30: 10.0, 50: (1.0, 0.0, 2.0)}})[0] == N
    assert th.verdict_abstract_time({"m": {30: 10.0, 50: (6.0, 4.0, 8.0)}})[0] == INC
    assert th.verdict_abstract_time({})[0] == U


def test_verdict_tradeoff_each_outcome():
    assert th.verdict_tradeoff({"m": {30: (50, 8), 50: (30, 4), 70: (10, 2)}})[0] == R
    assert th.verdict_tradeoff({"m": {30: (50, 8), 50: (60, 4), 70: (10, 2)}})[0] == N
    overlap = {"m": {30: ((50, 40, 60), 8), 50: ((45, 35, 55), 4), 70: (10, 2)}}
    assert th.verdict_tradeoff(overlap)[0] == INC
    assert th.verdict_tradeoff({})[0] == U


def test_verdict_model_dependent_each_outcome():
    assert th.verdict_model_dependent({"m": (1, 2)})[0] == U
    assert th.verdict_model_dependent({"a": (50, 2), "b": (30, 2)})[0] == R
    assert th.verdict_model_dependent({"a": (50, 2), "b": (48, 3)})[0] == N


def test_verdict_fig1_structure_each_outcome():
    import hmat

    x = np.linspace(0, 1, 256)
    smooth = (1.0 / (1.0 + 50 * np.abs(x[:, None] - x[None, :]))).astype(np.float32)
    H = hmat.compress(smooth, tol=0.5, leaf_size=16)
    v = th.verdict_fig1_structure(H)
    assert v[0] == R and v.value > 0.5
    noise = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    dense_only = hmat.compress(noise, tol=1e-3, leaf_size=16)  # no low rank: blocks kept dense
    assert th.verdict_fig1_structure(dense_only)[0] == N


def test_verdict_fig2_order_each_outcome():
    assert th.verdict_fig2_order({"svd": 1.0, "rrqr": 1.1, "aca": 1.5})[0] == R
    assert th.verdict_fig2_order({"svd": 2.0, "rrqr": 1.0, "aca": 1.5})[0] == N
    v = th.verdict_fig2_order({"svd": 1.0, "rrqr": 1.01, "aca": 0.99}, same_storage=True)
    assert v[0] == INC and "ties" in v[1]  # a tie is no order
    assert v.qualifiers and v.qualifiers[0].startswith("by construction")


def test_verdict_fig2_close_each_outcome():
    ranks = [5, 10, 20, 30, 50]
    t = {"svd": [1, 1, 1, 1, 1], "rrqr": [1.01, 1, 1, 1.2, 1.3], "aca": [1, 1, 1, 1.5, 1.6]}
    assert th.verdict_fig2_close(ranks, t)[0] == R
    flat = {"svd": [1] * 5, "rrqr": [1.04] * 5, "aca": [1.045] * 5}  # close everywhere
    assert th.verdict_fig2_close(ranks, flat)[0] == N
    assert th.verdict_fig2_close([5, 10], {k: v[:2] for k, v in t.items()})[0] == U
    wide = {m: [(0.9 * x, 1.1 * x) for x in v] for m, v in t.items()}  # +-10 % noise
    assert th.verdict_fig2_close(ranks, t, wide)[0] == INC
    tight = {m: [(0.999 * x, 1.001 * x) for x in v] for m, v in t.items()}
    assert th.verdict_fig2_close(ranks, t, tight)[0] == R


def test_verdict_fig2_monotone_each_outcome():
    ranks = list(range(1, 21))
    assert th.verdict_fig2_monotone(ranks, ranks)[0] == R
    assert th.verdict_fig2_monotone(ranks, ranks[::-1])[0] == N
    noisy = [1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 17, 16, 19, 18, 20]
    wobbly = [0, 2, 1, 3, 5, 4, 7, 6]  # rho 0.93 over 8 ranks: interval reaches below 0.8
    assert th.verdict_fig2_monotone(ranks, noisy)[0] in (R, INC)
    assert th.verdict_fig2_monotone(list(range(8)), wobbly)[0] == INC
    with pytest.raises(ValueError, match="4 or more"):
        th.spearman_interval([1, 2, 3], [1, 2, 3])


def test_verdicts_of_storage_each_outcome():
    ranks = [10, 50, 70, 100]
    nb = {"svd": [10, 50, 70, 90], "rrqr": [10, 50, 70, 90], "aca": [10, 50, 97, 99]}
    ratio = {k: np.asarray(v) / 100 for k, v in nb.items()}
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == R
    ratio["rrqr"] = np.asarray([0.1, 0.5, 1.0, 1.0])
    assert th.verdict_fig3_smaller(ranks, ratio)[0] == N
    assert th.verdict_fig3_svd_qr_equal(ranks, nb)[0] == R
    assert th.verdict_fig3_svd_qr_equal(ranks, {**nb, "rrqr": [10, 55, 70, 90]})[0] == N
    tol = {"tol": [0.1, 0.01], "svd": [10, 40], "aca": [15, 60]}
    assert th.verdict_fig3_aca_least(ranks, nb, 100, tol)[0] == R
    assert th.verdict_fig3_aca_least(ranks, nb, 100, {**tol, "aca": [10, 60]})[0] == N
    assert th.verdict_fig3_aca_least(ranks, {**nb, "aca": [10, 50, 70, 90]}, 100, tol)[0] == N
    assert th.verdict_fig3_aca_least(ranks, nb, 100)[0] == U  # fixed rank only: no test
    assert th.verdict_fig3_aca_least([10, 50], nb, 100, tol)[0] == U


def test_direction_changes_counts_turns_and_skips_flat_steps():
    assert th.direction_changes([5, 4, 3, 2]) == 0
    assert th.direction_changes([5, 5, 4, 4, 3]) == 0  # flat steps are not turns
    assert th.direction_changes([5, 3, 4, 2]) == 2
    assert th.direction_changes([5, 3, 3, 4, 4, 2]) == 2


def test_verdict_of_aca_choppiness_each_outcome():
    tols = [0.5, 0.3, 0.2, 0.1, 0.05]
    smooth = [10, 20, 30, 40, 50]
    choppy = th.verdict_fig2_aca_choppy
    assert choppy({"tol": tols, "svd": smooth, "aca": [12, 25, 22, 45, 60]})[0] == R
    assert choppy({"tol": tols, "svd": smooth, "aca": [12, 25, 30, 45, 60]})[0] == N
    # equally choppy is not "choppier than SVD"
    assert th.verdict_fig2_aca_choppy({"tol": tols, "svd": [10, 25, 22, 40, 50],
                                       "aca": [12, 25, 22, 45, 60]})[0] == N
    assert th.verdict_fig2_aca_choppy({"tol": [0.5, 0.1], "svd": [1, 2], "aca": [1, 2]})[0] == U
    with pytest.raises(ValueError, match="sorted"):
        th.verdict_fig2_aca_choppy({"tol": [0.5, 0.1, 0.3], "svd": [1, 2, 3], "aca": [1, 2, 3]})


def test_verdicts_of_accuracy_each_outcome():
    n = 1300
    assert th.verdict_fig4_order({"svd": 70, "rrqr": 65, "aca": 10}, n)[0] == R
    assert th.verdict_fig4_order({"svd": 60, "rrqr": 65, "aca": 10}, n)[0] == N
    assert th.verdict_fig4_order({"svd": 70, "rrqr": 69.5, "aca": 10}, n)[0] == INC
    assert th.verdict_fig4_drop([1, 50, 100], [30, 3, (1, 0.5, 1.5)])[0] == R
    v, text = th.verdict_fig4_drop([1, 50, 70], [30, 3, 1])
    assert v == R and "highest rank" in text
    assert th.verdict_fig4_drop([1, 50, 100], [5, 3, 1])[0] == N
    assert th.verdict_fig4_drop([1, 50, 100], [30, 3, (1.5, 0.5, 2.5)])[0] == INC
    assert th.verdict_qr_close([30, 50, 70], [70, 71, 72], [69, 70, 71])[0] == R
    assert th.verdict_qr_close([30, 50, 70], [70, 71, 72], [72, 70, 71])[0] == N
    assert th.verdict_qr_close([30, 50, 70], [70, 71, 72], [69, 70, 71], n_images=n)[0] == INC
    assert th.verdict_qr_close([10], [70], [69])[0] == U
    assert th.verdict_aca_weak([30, 50, 70], [70, 71, 72], [10, 20, 30], n)[0] == R
    assert th.verdict_aca_weak([30, 50, 70], [70, 71, 72], [69, 20, 30], n)[0] == INC  # unpaired
    paired = {30: (1.0, 0.5, 1.5), 50: (51, 49, 53), 70: (42, 40, 44)}
    assert th.verdict_aca_weak([30, 50, 70], [70, 71, 72], [69, 20, 30], n, paired)[0] == N
    paired[30] = (3.5, 2.5, 4.5)
    assert th.verdict_aca_weak([30, 50, 70], [70, 71, 72], [66.5, 20, 30], n, paired)[0] == INC
    paired = {30: (1.0, 0.5, 1.5), 50: (1.0, 0.2, 1.8), 70: (2.0, 1.5, 2.5)}
    v = th.verdict_qr_close([30, 50, 70], [70, 71, 72], [69, 70, 70], n_images=n, gaps=paired)
    assert v[0] == R
    assert th.verdict_aca_weak([10], [70], [10])[0] == U


def test_verdict_fig4_stable_each_outcome():
    ranks = [1, 5, 10, 20, 50]
    assert th.stable_rank(ranks, [10, 50, 69, 70, 70], 2.0) == 10
    assert th.stable_rank(ranks, [70, 10, 69, 70, 70], 2.0) == 10  # must stay within from there
    good = {"svd": [40, 69, 70, 70, 70], "rrqr": [10, 50, 69, 70, 70], "aca": [5, 20, 50, 68.5, 70]}
    assert th.verdict_fig4_stable(ranks, good)[0] == R
    assert th.verdict_fig4_stable(ranks, {**good, "aca": [69, 70, 70, 70, 70]})[0] == N
    assert th.verdict_fig4_stable(ranks, {**good, "rrqr": good["svd"]})[0] == INC


def _row(name, ts, ts_iv, fixed, broken, storage=0.5, blocks=(3, 2)):
    return {"variant": name, "family": "H", "time_saving_pct": ts, "time_saving_lo_pct": ts_iv[0],
            "time_saving_hi_pct": ts_iv[1], "loss_pts": 100 * (broken - fixed) / 1300,
            "fixed": fixed, "broken": broken, "storage_ratio": storage,
            "n_lowrank": blocks[0], "n_dense": blocks[1]}


def test_verdict_suitable_each_outcome():
    good = _row("a", 30, (25, 35), 5, 10)  # loss 0.38 points
    bad = _row("b", 50, (45, 55), 0, 200)  # loss 15 points
    assert th.verdict_suitable([good, bad], 1300)[0] == R
    assert th.verdict_suitable([_row("c", 10, (5, 15), 5, 10), bad], 1300)[0] == N
    assert th.verdict_suitable([_row("d", 22, (15, 30), 5, 10), bad], 1300)[0] == INC
    slow = _row("e", -10, (-12, -8), 5, 10)
    assert th.verdict_suitable([slow], 1300)[0] == N  # a slowdown never counts
    assert th.verdict_suitable([], 1300)[0] == U
    # an adaptive build that kept one global block does not count as an H-matrix
    one = _row("H SVD adaptive tol=0.4", 40, (35, 45), 5, 10, blocks=(1, 0))
    v, text = th.verdict_suitable([slow, one], 1300)
    assert v == N and "one-block" in text


def test_verdict_accuracy_decreases_each_outcome():
    lossy = [_row("a", 0, (0, 0), 5, 60), _row("b", 0, (0, 0), 2, 80)]
    assert th.verdict_accuracy_decreases(lossy, 1300)[0] == R
    noise = lossy + [_row("c", 0, (0, 0), 4, 3)]  # one image better: within the noise
    assert th.verdict_accuracy_decreases(noise, 1300)[0] == INC
    gain = lossy + [_row("d", 0, (0, 0), 40, 1)]  # a significant gain
    assert th.verdict_accuracy_decreases(gain, 1300)[0] == N
    assert th.verdict_accuracy_decreases([_row("e", 0, (0, 0), 1, 2, storage=1.2)], 1300)[0] == U


def test_paired_gap_uses_the_same_images():
    rng = np.random.default_rng(0)
    layer = th.Layer("m", "M", None, None, None, np.zeros(1000), None, {})
    base = rng.random(1000) < 0.7
    flip = rng.random(1000) < 0.02
    layer.correct_by_variant = {"a": base, "b": base & ~flip, "c": base}
    g, lo, hi = th.paired_gap(layer, "a", "b")
    assert 0 < lo < g < hi < 4  # b loses the flipped images: a small, certain gap
    assert th.paired_gap(layer, "a", "c") == (0.0, 0.0, 0.0)
    g2 = th.paired_gap(layer, ["a", "c"], ["b", "b"])
    assert g2[0] == pytest.approx(g)
    with pytest.raises(KeyError, match="not scored"):
        th.paired_gap(layer, "a", "zzz")


def test_substitute_names_the_model_and_the_images():
    class L:
        model, label, n_images = "mobilenet_v2", "MobileNetV2 (x)", 1300
        labels, feature_meta = [], {}

    q = th.substitute("T-fig4-svd-most-accurate", L(), images_folder="/d/imagenet-val-1300")
    assert q[0] == "on a substitute: MobileNetV2 (x) for GoogLeNet"
    assert "1300 of the 50,000" in q[1] and "227x227" in q[1]
    assert th.substitute("T1-mobilenet_v2-r30", L())[0].startswith("on a substitute: 1300")


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
