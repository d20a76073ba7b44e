"""hmat.io: save/load round trips (values, products, info, permutations) and corrupt files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hmat
from hmat.io import FORMAT_VERSION


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 45)).astype(np.float32)
    H = hmat.compress(a, rank=4, leaf_size=8, cluster="data")
    path = tmp_path / "h.npz"
    H.save(path)
    H2 = hmat.load(path)
    assert H2.shape == H.shape and H2.dtype == H.dtype and H2.nbytes == H.nbytes
    assert np.array_equal(H2.to_dense(), H.to_dense())
    assert np.array_equal(H2.row_perm, H.row_perm) and np.array_equal(H2.col_perm, H.col_perm)
    assert H2.info["method"] == "svd" and H2.info["rank"] == 4
    assert H2.info["rel_error_fro"] == H.info["rel_error_fro"]
    hmat.io.save(H, tmp_path / "h2.npz")  # the module function writes the same file
    assert np.array_equal(hmat.load(tmp_path / "h2.npz").to_dense(), H.to_dense())


def test_products_survive_save_load(tmp_path):
    i = np.arange(90)[:, None] / 90
    j = np.arange(70)[None, :] / 70
    a = (1.0 / (1.0 + 40 * np.abs(i - j))).astype(np.float32)
    H = hmat.compress(a, rank=5, leaf_size=8)
    H.save(tmp_path / "h.npz")
    H2 = hmat.load(str(tmp_path / "h.npz"))  # a str path works too
    x = np.random.default_rng(1).standard_normal((70, 4)).astype(np.float32)
    np.testing.assert_array_equal(H @ x, H2 @ x)
    assert H2.nbytes == H.nbytes


def test_info_that_is_not_json_is_saved_as_text(tmp_path):
    H = hmat.compress(np.eye(20), rank=1, leaf_size=4)
    H.info.update(arr=np.int64(3), obj=object(), nested={"t": (1, np.float32(0.5))})
    H.save(tmp_path / "h.npz")
    info = hmat.load(tmp_path / "h.npz").info
    assert info["arr"] == 3 and info["nested"] == {"t": [1, 0.5]}
    assert info["obj"].startswith("<object")


def _arrays(tmp_path):
    H = hmat.compress(np.eye(20), rank=1, leaf_size=4)
    good = tmp_path / "good.npz"
    H.save(good)
    with np.load(good) as f:
        return dict(f.items())


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        hmat.load(bad)
    with pytest.raises(ValueError, match="not a readable"):
        hmat.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="metadata"):
        hmat.load(other)
    arrays = _arrays(tmp_path)
    arrays["d_desc"] = arrays["d_desc"][:-1]  # drop a block: no longer tiles the matrix
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ValueError, match="tile"):
        hmat.load(tmp_path / "cut.npz")


def _with_meta(arrays, **meta):
    out = dict(arrays)
    out["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return out


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: _with_meta(a, format="other", version=FORMAT_VERSION), "not an hmat"),
        (lambda a: _with_meta(a, format="hmat.HMatrix", version=FORMAT_VERSION + 1),
         "format version"),
        (lambda a: {k: v for k, v in a.items() if k != "lr_data"}, "lacks arrays"),
        (lambda a: {**a, "d_data": a["d_data"][:-1]}, "tile"),  # data shorter than its table
        (lambda a: {**a, "shape": np.array([21, 20])}, "tile"),
    ],
)
def test_load_rejects_corrupt_files(tmp_path, change, match):
    np.savez(tmp_path / "x.npz", **change(_arrays(tmp_path)))
    with pytest.raises(ValueError, match=match):
        hmat.load(tmp_path / "x.npz")


def test_load_refuses_pickles(tmp_path):
    arrays = _arrays(tmp_path)
    arrays["lr_data"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError):
        hmat.load(tmp_path / "p.npz")


@pytest.mark.parametrize("precision", ["int8", "bfloat16", "float16", "adaptive"])
def test_quantized_roundtrip_is_bit_exact(tmp_path, precision):
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((50, 20)) * np.exp(-np.arange(20) / 4)) @ rng.standard_normal(
        (20, 40))
    H = hmat.compress(a, tol=1e-3, precision=precision, leaf_size=8, cluster="data")
    H.save(tmp_path / "q.npz")
    H2 = hmat.load(tmp_path / "q.npz")
    assert type(H2) is hmat.QuantizedHMatrix and H2.precision == precision
    assert H2.dtype == H.dtype and H2.nbytes == H.nbytes and H2.shape == H.shape
    for k, v in H.store._asdict().items():
        got = getattr(H2.store, k)
        assert got.dtype == v.dtype and np.array_equal(got.view(np.uint8), v.view(np.uint8)), k
    assert np.array_equal(H2.to_dense(), H.to_dense())
    x = rng.standard_normal(40).astype(np.float32)
    np.testing.assert_array_equal(H2 @ x, H @ x)
    assert H2.info["rel_error_fro"] == H.info["rel_error_fro"]


def test_float_precisions_roundtrip_and_version_1_still_loads(tmp_path):
    a = np.random.default_rng(6).standard_normal((30, 30))
    for precision in ("float32", "float64"):
        H = hmat.compress(a, rank=3, precision=precision, leaf_size=8)
        H.save(tmp_path / "h.npz")
        H2 = hmat.load(tmp_path / "h.npz")
        assert H2.dtype == np.dtype(precision) and np.array_equal(H2.to_dense(), H.to_dense())
    with np.load(tmp_path / "h.npz") as f:  # a plain H-matrix still writes version 1
        assert json.loads(f["meta"].tobytes().decode())["version"] == 1


def test_load_rejects_corrupt_quantized_files(tmp_path):
    a = np.random.default_rng(7).standard_normal((30, 30))
    hmat.compress(a, rank=3, precision="int8", leaf_size=8).save(tmp_path / "q.npz")
    with np.load(tmp_path / "q.npz") as f:
        arrays = dict(f.items())
    bad = {**arrays, "q_i8": arrays["q_i8"][:-1]}  # a row reaches past its buffer
    np.savez(tmp_path / "b1.npz", **bad)
    with pytest.raises(ValueError, match="corrupt"):
        hmat.load(tmp_path / "b1.npz")
    bad = {**arrays, "q_i8": arrays["q_i8"].astype(np.int16)}
    np.savez(tmp_path / "b2.npz", **bad)
    with pytest.raises(ValueError, match="q?i8|corrupt"):
        hmat.load(tmp_path / "b2.npz")
    np.savez(tmp_path / "b3.npz", **{k: v for k, v in arrays.items() if k != "q_d_run"})
    with pytest.raises(ValueError, match="lacks arrays"):
        hmat.load(tmp_path / "b3.npz")
