"""hmat.nn.baselines: the compression baselines at one memory measure (H-matrix to a byte
budget, global truncated SVD, SVD with int8 factors, magnitude pruning, quantization),
compress_network, densify."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import hmat
from hmat.nn import (
    HLinear,
    LowRankInt8Linear,
    LowRankLinear,
    QuantLinear,
    compress_layer,
    compress_network,
    csr_nbytes,
    dense_layer_nbytes,
    densify,
    effective_weight,
    layer_n_params,
    layer_nbytes,
    model_n_params,
    model_nbytes,
)


@pytest.mark.parametrize("method", ["hmatrix", "svd", "prune", "quant"])
@pytest.mark.parametrize("fraction", [0.6, 0.3, 0.15])
def test_baselines_hit_budget(method, fraction, make_linear):
    lin = make_linear(64, 48, dtype=torch.float32)
    budget = int(fraction * dense_layer_nbytes(lin))
    mod, info = compress_layer(lin, method, budget)
    assert info["nbytes"] == layer_nbytes(mod) <= budget
    assert info["n_params"] == layer_n_params(mod)
    m, n, item = 64, 48, 4
    if method == "svd":  # the largest rank that fits
        k = info["rank"]
        assert info["nbytes"] == k * (m + n) * item + m * item
        assert (k + 1) * (m + n) * item + m * item > budget
    if method == "prune":
        nnz = int(mod.weight_mask.sum())
        assert info["nbytes"] == csr_nbytes(nnz, m, item) + m * item
        assert csr_nbytes(nnz + 1, m, item) + m * item > budget
        kept = mod.weight.detach().abs()[mod.weight_mask.bool()]
        dropped = lin.weight.detach().abs()[~mod.weight_mask.bool()]
        assert kept.min() >= dropped.max()  # magnitude pruning
    if method == "quant":
        bits = info["bits"]
        assert info["nbytes"] == math.ceil(m * n * bits / 8) + 4 * m + 4 * m
        if bits < 8:
            assert math.ceil(m * n * (bits + 1) / 8) + 8 * m > budget
    if method == "hmatrix":
        assert isinstance(mod, HLinear) and mod.info["adaptive"]
        assert info["nbytes"] == mod.to_hmatrix().nbytes + 4 * m
        assert info["rel_weight_error"] <= info["certified_bound"] + 1e-6
        assert info["n_blocks"] == mod.n_blocks
        # the budget search finds (about) the smallest tolerance that fits
        tighter = HLinear.from_linear(lin, tol=0.9 * info["tol"], adaptive=True)
        assert tighter.nbytes > budget or tighter.nbytes == mod.nbytes
    w = effective_weight(mod).detach()
    err = float(torch.linalg.norm(w - lin.weight.detach()) / torch.linalg.norm(lin.weight.detach()))
    assert info["rel_weight_error"] == pytest.approx(err, rel=1e-4, abs=1e-7)


def test_hmatrix_rank_to_budget(make_linear):
    lin = make_linear(64, 48, dtype=torch.float32)
    budget = int(0.6 * dense_layer_nbytes(lin))
    mod, info = compress_layer(lin, "hmatrix_rank", budget, leaf_size=16,
                               admissibility="weak")
    assert info["nbytes"] == layer_nbytes(mod) <= budget
    bigger = HLinear.from_linear(lin, rank=info["rank"] + 1, leaf_size=16, admissibility="weak")
    assert bigger.nbytes > budget  # the largest rank that fits
    with pytest.raises(ValueError, match="rank-1"):
        compress_layer(lin, "hmatrix_rank", 2000)


def test_hmatrix_without_budget(make_linear):
    lin = make_linear(64, 48)
    mod, info = compress_layer(lin, "hmatrix", tol=0.05, leaf_size=8)
    assert info["certified_bound"] == 0.05 and info["rel_weight_error"] <= 0.05
    mod, info = compress_layer(lin, "hmatrix", rank=3, leaf_size=8)
    assert info["rank"] == 3 and mod.to_hmatrix().max_rank <= 3
    mod, info = compress_layer(lin, "hmatrix_rank", rank=2)
    assert info["rank"] == 2


def test_int8_and_quant_semantics(make_linear):
    lin = make_linear(16, 12, dtype=torch.float32)
    q, info = compress_layer(lin, "int8", None)
    assert info["bits"] == 8 and q.nbytes == 16 * 12 + 4 * 16 + 4 * 16
    w = q.dense_weight().detach()
    scale = lin.weight.detach().abs().amax(1, keepdim=True) / 127
    codes = w / scale
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert codes.abs().max() <= 127 + 1e-4
    # straight-through gradient: d(sum w_q * c)/dw = c
    c = torch.randn_like(w)
    (g,) = torch.autograd.grad((q.dense_weight() * c).sum(), q.weight)
    torch.testing.assert_close(g, c)
    with pytest.raises(ValueError, match="below int8"):
        compress_layer(lin, "int8", 100)


def test_lowrank_is_truncated_svd(make_linear):
    lin = make_linear(dtype=torch.float64)
    mod, info = compress_layer(lin, "svd", None, rank=5)
    assert isinstance(mod, LowRankLinear) and info["rank"] == 5
    s = torch.linalg.svdvals(lin.weight.detach())
    expect = float(torch.sqrt((s[5:] ** 2).sum()) / torch.sqrt((s ** 2).sum()))
    assert info["rel_weight_error"] == pytest.approx(expect, rel=1e-8)
    # the same product as hmat.TruncatedSVD on the whole weight; factors balanced
    lr = hmat.TruncatedSVD()(lin.weight.detach().numpy(), hmat.Accuracy(rank=5))
    np.testing.assert_allclose(mod.dense_weight().detach().numpy(), lr.to_dense(), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.norm(mod.A, dim=0).detach().numpy(),
                               torch.linalg.norm(mod.B, dim=1).detach().numpy(), rtol=1e-10)
    assert mod.nbytes == 5 * (40 + 30) * 8 + 40 * 8 and "rank=5" in repr(mod)


def test_compress_network_and_densify():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                        nn.Linear(32, 1))
    x = torch.rand(6, 1)
    for method in ("hmatrix", "svd", "prune", "quant"):
        new, infos = compress_network(net, method, 0.5,
                                      lambda n, m: m.in_features == m.out_features)
        assert list(infos) == ["2"]
        assert isinstance(new[0], nn.Linear) and not hasattr(new[0], "weight_mask")
        assert layer_nbytes(new[2]) <= 0.5 * dense_layer_nbytes(net[2])
        assert model_nbytes(new) < model_nbytes(net)
        assert model_n_params(new) <= model_n_params(net)
        with torch.no_grad():
            torch.testing.assert_close(densify(new)(x), new(x), atol=1e-6, rtol=1e-5)
    assert isinstance(net[2], nn.Linear) and not hasattr(net[2], "weight_mask")  # untouched
    same, infos = compress_network(net, "dense", 0.5)
    assert infos == {} and same is not net and model_nbytes(same) == model_nbytes(net)


def test_quant_linear_bits_storage():
    q = QuantLinear(torch.randn(8, 10), None, bits=4, per_channel=False)
    assert q.nbytes == 40 + 4
    assert len(torch.unique(q.dense_weight().detach())) <= 15


def test_bad_input(make_linear):
    lin = make_linear()
    with pytest.raises(ValueError, match="method"):
        compress_layer(lin, "zip", 1000)
    with pytest.raises(ValueError, match="budget"):
        compress_layer(lin, "svd", -5)
    with pytest.raises(ValueError, match="below rank 1"):
        compress_layer(lin, "svd", 10)
    with pytest.raises(ValueError, match="not both"):
        compress_layer(lin, "hmatrix", 1000, tol=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        compress_layer(lin, "hmatrix")
    with pytest.raises(ValueError, match="supports only"):
        compress_layer(lin, "hmatrix", 5000, admissibility="weak")
    with pytest.raises(TypeError, match="nn.Linear"):
        compress_layer(nn.Conv1d(1, 1, 1), "svd", 100)
    with pytest.raises(ValueError, match="fraction"):
        compress_network(nn.Sequential(nn.Linear(2, 2)), "svd", 1.5)
    with pytest.raises(ValueError, match="bits"):
        QuantLinear(torch.randn(2, 2), bits=9)


@pytest.mark.parametrize("fraction", [0.5, 0.2, 0.08])
def test_svd_int8_hits_budget_and_stores_int8(fraction, make_linear):
    """SVD + int8: the largest rank whose int8 factors (codes + float32 scales) and bias fit,
    the factors exactly what hmat.precision.quantize stores, the error that of those values."""
    from hmat import precision

    lin = make_linear(64, 48, dtype=torch.float32)
    m, n = 64, 48
    budget = int(fraction * dense_layer_nbytes(lin))
    mod, info = compress_layer(lin, "svd_int8", budget)
    k = info["rank"]
    assert isinstance(mod, LowRankInt8Linear) and mod.rank == k >= 1
    assert info["nbytes"] == layer_nbytes(mod) == k * (m + n) + 8 * k + 4 * m <= budget
    assert k == min(m, n) or (k + 1) * (m + n + 8) + 4 * m > budget  # the largest that fits
    # bytes and values: those of hmat.precision's int8 storage of the SVD factors
    lr, _ = compress_layer(lin, "svd", None, rank=k)
    qa = precision.quantize(lr.A.detach().double(), "int8", per="column")
    qb = precision.quantize(lr.B.detach().double(), "int8", per="row")
    assert qa.nbytes + qb.nbytes == k * (m + n) + 8 * k
    np.testing.assert_allclose(mod.A.detach().numpy(), qa.dequantize(np.float64), rtol=1e-6)
    np.testing.assert_allclose(mod.B.detach().numpy(), qb.dequantize(np.float64), rtol=1e-6)
    codes = mod.A.detach().double() / torch.from_numpy(qa.scale.astype(np.float64))
    assert float((codes - codes.round()).abs().max()) < 1e-4  # on the int8 grid
    # rounding costs little on top of truncation, and never less than the truncation alone
    _, info_svd = compress_layer(lin, "svd", None, rank=k)
    assert info_svd["rel_weight_error"] <= info["rel_weight_error"] * (1 + 1e-6)
    assert info["rel_weight_error"] <= info_svd["rel_weight_error"] + 0.02
    # it stores a higher rank than the float32 SVD at the same budget
    _, info32 = compress_layer(lin, "svd", budget)
    assert k >= min(3 * info32["rank"], min(m, n))
    # the module works as a layer and through densify
    x = torch.randn(5, n)
    np.testing.assert_allclose(mod(x).detach().numpy(),
                               (x @ mod.dense_weight().T + lin.bias).detach().numpy(), atol=1e-5)


def test_svd_int8_bad_input(make_linear):
    lin = make_linear(dtype=torch.float32)
    with pytest.raises(ValueError, match="below rank 1"):
        compress_layer(lin, "svd_int8", 100)
    with pytest.raises(ValueError, match="needs rank"):
        compress_layer(lin, "svd_int8")
