"""hmat.compressors: Accuracy, LowRank, TruncatedSVD / RRQR / ACA (with and without
recompression), what each compressor needs, recompress and frobenius_tail."""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat.compressors import COMPRESSORS, frobenius_tail, get_compressor, recompress
from hmat.examples import exponential_decay

COMPRESSOR_OBJECTS = {"svd": hmat.TruncatedSVD(), "aca": hmat.ACA(), "rrqr": hmat.RRQR()}


def _decaying_block(m=50, n=40, k=30, seed=0):
    rng = np.random.default_rng(seed)
    s = 2.0 ** -np.arange(k)
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (q1 * s) @ q2.T


@pytest.mark.parametrize("method", list(COMPRESSOR_OBJECTS))
def test_compressors_meet_accuracy(method):
    blk = _decaying_block()
    comp = COMPRESSOR_OBJECTS[method]
    lr = comp(blk, hmat.Accuracy(rank=5))
    assert isinstance(lr, hmat.LowRank)
    assert lr.u.shape == (50, 5) and lr.vt.shape == (5, 40) and lr.rank == 5
    assert lr.shape == blk.shape
    np.testing.assert_array_equal(lr.to_dense(), lr.u @ lr.vt)
    lr = comp(blk, hmat.Accuracy(rtol=1e-3))
    err = np.linalg.norm(blk - lr.u @ lr.vt)
    slack = 1.0 if method != "aca" else 10.0  # ACA's stopping rule is an estimate
    assert err <= slack * 1e-3 * np.linalg.norm(blk)
    lr = comp(blk, hmat.Accuracy(atol=1e-4))
    assert np.linalg.norm(blk - lr.u @ lr.vt) <= slack * 1e-4
    spectral = hmat.Accuracy(atol=1e-4, norm="2")
    if method == "aca":  # ACA's error estimate is a Frobenius one: it rejects the spectral norm
        with pytest.raises(ValueError, match="Frobenius"):
            comp(blk, spectral)
        with pytest.raises(ValueError, match="Frobenius"):
            comp(blk, hmat.Accuracy(rtol=1e-3, norm="2"))
        assert comp(blk, hmat.Accuracy(rank=3, norm="2")).rank == 3  # a fixed rank is fine
    else:
        lr = comp(blk, spectral)
        assert np.linalg.norm(blk - lr.u @ lr.vt, 2) <= 1e-4 * 4


@pytest.mark.parametrize("method", list(COMPRESSOR_OBJECTS))
def test_max_rank_and_float32(method):
    blk = _decaying_block().astype(np.float32)
    lr = COMPRESSOR_OBJECTS[method](blk, hmat.Accuracy(rtol=1e-6, max_rank=4))
    assert lr.rank <= 4
    assert lr.u.dtype == np.float32 and lr.vt.dtype == np.float32


def test_each_compressor_says_what_it_needs():
    assert hmat.TruncatedSVD.needs == hmat.TruncatedSVD().needs == "block"
    assert hmat.RRQR().needs == "block"
    assert hmat.ACA().needs == hmat.ACA(recompress=False).needs == "entries"
    assert {name: c.needs for name, c in COMPRESSORS.items()} == {
        "svd": "block", "rrqr": "block", "qr": "block", "aca": "entries"}


@pytest.mark.parametrize("method", ["svd", "rrqr"])
def test_block_compressors_form_an_entry_block(method):
    a = _decaying_block()
    calls = []

    def entries(rows, cols):
        calls.append((len(rows), len(cols)))
        return a[np.ix_(rows, cols)]

    eb = hmat.EntryBlock(entries, np.arange(50), np.arange(40), np.dtype(np.float64))
    lr = COMPRESSOR_OBJECTS[method](eb, hmat.Accuracy(rank=6))
    assert calls == [(50, 40)]
    np.testing.assert_allclose(lr.to_dense(), COMPRESSOR_OBJECTS[method](a, hmat.Accuracy(
        rank=6)).to_dense(), atol=1e-12)


@pytest.mark.parametrize("recompress_", [True, False])
def test_aca_reads_rows_and_columns_only(recompress_):
    a = _decaying_block(80, 70)
    calls = []

    def entries(rows, cols):
        calls.append((len(rows), len(cols)))
        return a[np.ix_(rows, cols)]

    eb = hmat.EntryBlock(entries, np.arange(80), np.arange(70), np.dtype(np.float64))
    lr = hmat.ACA(recompress=recompress_)(eb, hmat.Accuracy(rtol=1e-4))
    assert all(r == 1 or c == 1 for r, c in calls)
    assert sum(r * c for r, c in calls) < 0.6 * a.size
    assert np.linalg.norm(a - lr.to_dense()) <= 10 * 1e-4 * np.linalg.norm(a)


@pytest.mark.parametrize("rank", [1, 3, 7])
@pytest.mark.parametrize("recompress_", [True, False])
def test_aca_rank_deficient_blocks(rank, recompress_):
    rng = np.random.default_rng(rank)
    blk = rng.standard_normal((40, rank)) @ rng.standard_normal((rank, 30))
    aca = hmat.ACA(recompress=recompress_)
    with np.errstate(all="raise"):
        lr = aca(blk, hmat.Accuracy(rtol=1e-10))
        lr2 = aca(blk, hmat.Accuracy(rank=20))
        lr0 = aca(np.zeros((10, 12)), hmat.Accuracy(rank=5))
    assert lr.rank <= rank + 1 and lr2.rank <= rank + 1
    assert np.allclose(lr2.u @ lr2.vt, blk, atol=1e-8 * np.abs(blk).max())
    assert lr0.u.shape == (10, 0) and lr0.vt.shape == (0, 12)


def test_empty_and_zero_blocks():
    for comp in COMPRESSOR_OBJECTS.values():
        lr = comp(np.zeros((0, 5)), hmat.Accuracy(rank=2))
        assert lr.u.shape == (0, 0) and lr.vt.shape == (0, 5)
        lr = comp(np.zeros((6, 5)), hmat.Accuracy(rtol=0.1))
        assert lr.rank == 0 and lr.shape == (6, 5)
    z = hmat.LowRank.zero(3, 4, np.float32)
    assert z.rank == 0 and z.shape == (3, 4) and z.to_dense().dtype == np.float32
    assert np.all(z.to_dense() == 0)


def test_recompression_makes_aca_close_to_svd_per_block():
    """ACA followed by QR + SVD truncation is near the best rank-k approximation of a block with
    a decaying spectrum; the plain cross approximation is not."""
    a = exponential_decay(120, 100, rate=4.0, seed=1)
    s = np.linalg.svd(a, compute_uv=False)
    for k in (5, 10, 20):
        best = np.sqrt(np.sum(s[k:] ** 2))
        re = np.linalg.norm(a - hmat.ACA()(a, hmat.Accuracy(rank=k)).to_dense())
        plain = np.linalg.norm(a - hmat.ACA(recompress=False)(a, hmat.Accuracy(rank=k))
                               .to_dense())
        assert best <= re <= 1.1 * best, k
        assert re < plain, k


def test_aca_oversample_validation():
    with pytest.raises(ValueError, match="oversample"):
        hmat.ACA(oversample=0.5)
    with pytest.raises(TypeError, match="oversample"):
        hmat.ACA(oversample="2")
    a = _decaying_block()
    assert hmat.ACA(oversample=1.0)(a, hmat.Accuracy(rank=4)).rank == 4


def test_recompress_is_the_best_approximation_of_the_factors():
    rng = np.random.default_rng(0)
    u, vt = rng.standard_normal((30, 8)), rng.standard_normal((8, 25))
    full = u @ vt
    s = np.linalg.svd(full, compute_uv=False)
    for k in (1, 3, 8):
        lr = recompress(hmat.LowRank(u, vt), hmat.Accuracy(rank=k))
        assert lr.rank == k
        assert np.linalg.norm(full - lr.to_dense()) == pytest.approx(np.sqrt(np.sum(s[k:] ** 2)),
                                                                     rel=1e-8, abs=1e-10)
    lr = recompress(hmat.LowRank(u, vt), hmat.Accuracy(rtol=0.3))
    assert np.linalg.norm(full - lr.to_dense()) <= 0.3 * np.linalg.norm(full)
    lr = recompress(hmat.LowRank(u, vt), hmat.Accuracy(atol=0.5 * (s[2] + s[3]), norm="2"))
    assert lr.rank == 3
    assert recompress(hmat.LowRank.zero(4, 5), hmat.Accuracy(rank=2)).rank == 0
    assert recompress(hmat.LowRank(u, vt), hmat.Accuracy(rank=2), np.float32).u.dtype == np.float32


def test_frobenius_tail():
    sq = np.array([16.0, 4.0, 1.0, 0.0])
    np.testing.assert_allclose(frobenius_tail(sq), [np.sqrt(21), np.sqrt(5), 1.0, 0.0, 0.0])
    assert frobenius_tail([]).tolist() == [0.0]


def test_accuracy_choose_rank_rules():
    s = np.array([4.0, 2.0, 1.0, 0.5, 0.0])
    err2 = np.append(s, 0.0)
    fro = np.sqrt(np.cumsum((s**2)[::-1])[::-1])
    errf = np.append(fro, 0.0)
    shape, dt = (5, 5), np.float64
    assert hmat.Accuracy(rank=2).choose_rank(err2, s[0], shape, dt) == 2
    assert hmat.Accuracy(rank=9).choose_rank(err2, s[0], shape, dt) == 4  # zero tail cut
    assert hmat.Accuracy(rtol=0.3, norm="2").choose_rank(err2, s[0], shape, dt) == 2
    assert hmat.Accuracy(atol=0.6, norm="2").choose_rank(err2, s[0], shape, dt) == 3
    assert hmat.Accuracy(rtol=0.3).choose_rank(errf, fro[0], shape, dt) == 2
    assert hmat.Accuracy(rtol=0.3, max_rank=1).choose_rank(errf, fro[0], shape, dt) == 1
    np.testing.assert_allclose(hmat.Accuracy(rank=1).errors(s), errf)
    np.testing.assert_allclose(hmat.Accuracy(rank=1, norm="2").errors(s), err2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(), ValueError, "exactly one"),
        (dict(rank=2, rtol=0.1), ValueError, "exactly one"),
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=True), TypeError, "rank"),
        (dict(rank=2, max_rank=1.5), TypeError, "max_rank"),
        (dict(rtol=1.5), ValueError, "tol"),
        (dict(rtol="0.1"), TypeError, "tol"),
        (dict(atol=0.0), ValueError, "atol"),
        (dict(atol=float("inf")), ValueError, "atol"),
        (dict(rank=2, norm="nuc"), ValueError, "norm"),
    ],
)
def test_bad_accuracy(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hmat.Accuracy(**kwargs)


def test_get_compressor():
    assert isinstance(get_compressor("svd"), hmat.TruncatedSVD)
    assert isinstance(get_compressor("qr"), hmat.RRQR)
    custom = hmat.ACA(recompress=False)
    assert get_compressor(custom) is custom
    for bad in ("lu", None, 3):
        with pytest.raises(ValueError, match="method"):
            get_compressor(bad)
