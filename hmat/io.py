"""Save and load :class:`hmat.HMatrix` as versioned ``.npz`` files (block form, no pickles).

Version 1: block form in float32/float64 (still what a plain H-matrix writes, so older hmat
versions read it). Version 2: a :class:`~hmat.qhmatrix.QuantizedHMatrix`, its
:class:`~hmat.precision.QStore` arrays as stored (bit-exact), the precision and result dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .hmatrix import HMatrix
from .precision import QStore
from .qhmatrix import QuantizedHMatrix

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # the newest version this hmat writes and reads (it reads 1 and 2)
_REQUIRED = {"lr_desc", "lr_data", "d_desc", "d_data", "shape"}
_REQUIRED_Q = {f"q_{k}" for k in QStore._fields} | {"shape"}


def save(H: HMatrix, path) -> None:
    """Write ``H`` to ``path`` (``.npz``): block form (or the quantized storage), permutations
    and ``H.info`` as JSON."""
    meta = {"format": "hmat.HMatrix", "version": 1, "info": _jsonable(H.info)}
    if isinstance(H, QuantizedHMatrix):
        arrays = {f"q_{k}": v for k, v in H.store._asdict().items()}
        meta.update(version=2, storage="quantized", precision=H.precision,
                    dtype=H.dtype.name)
    else:
        lr_desc, lr_data, d_desc, d_data = H.block_form()
        arrays = dict(lr_desc=lr_desc, lr_data=lr_data, d_desc=d_desc, d_data=d_data)
    arrays["shape"] = np.asarray(H.shape, dtype=np.int64)
    if H.row_perm is not None:
        arrays["row_perm"] = H.row_perm
    if H.col_perm is not None:
        arrays["col_perm"] = H.col_perm
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        return repr(obj)


def load(path) -> HMatrix:
    """Read a file written by :meth:`HMatrix.save`; a foreign or corrupt file raises ValueError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            files = dict(f.items())
    except Exception as exc:  # zipfile / format errors
        raise ValueError(f"{path} is not a readable hmat .npz file: {exc}") from exc
    try:
        meta = json.loads(files.pop("meta").tobytes().decode())
    except Exception as exc:
        raise ValueError(f"{path} has no valid hmat metadata") from exc
    if meta.get("format") != "hmat.HMatrix":
        raise ValueError(f"{path} is not an hmat.HMatrix file (format={meta.get('format')!r})")
    if meta.get("version") not in (1, FORMAT_VERSION):
        raise ValueError(f"{path} has format version {meta.get('version')}, this hmat reads "
                         f"versions 1 to {FORMAT_VERSION}")
    quantized = meta.get("storage") == "quantized"
    missing = (_REQUIRED_Q if quantized else _REQUIRED) - set(files)
    if missing:
        raise ValueError(f"{path} lacks arrays {sorted(missing)}")
    if quantized:
        return QuantizedHMatrix(
            tuple(files["shape"]), QStore(*(files[f"q_{k}"] for k in QStore._fields)),
            dtype=meta.get("dtype", "float32"), row_perm=files.get("row_perm"),
            col_perm=files.get("col_perm"), info=meta.get("info", {}),
            precision=meta.get("precision"))
    return HMatrix(shape=tuple(files["shape"]), lr_desc=files["lr_desc"],
                   lr_data=files["lr_data"], d_desc=files["d_desc"], d_data=files["d_data"],
                   row_perm=files.get("row_perm"), col_perm=files.get("col_perm"),
                   info=meta.get("info", {}))
