"""Where the book's files live, in one place.

* the repository's committed data (``data/claims.yml``, ``data/weights.yml``,
  ``data/thesis_table1.csv``): :func:`repo_data`. ``hmatbook`` is installed editable from the
  checkout (``pip install -e book``, done by ``nox``), so the repository is the folder above
  ``book/``;
* the offline data folder (pretrained weights, ImageNet images) named by ``$HMAT_DATA_DIR``:
  :func:`data_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "DATA_ENV", "repo_data", "data_dir"]

REPO_ROOT = Path(__file__).resolve().parents[2]  # book/hmatbook/paths.py -> the checkout
DATA_ENV = "HMAT_DATA_DIR"


def repo_data(name: str) -> Path:
    """The committed file ``data/<name>`` of this repository (raises if it is not there)."""
    path = REPO_ROOT / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: hmatbook reads the repository's data/ folder and runs only from "
            "a checkout (install it with `pip install -e book` from the repository root)")
    return path


def data_dir(required: bool = False) -> Path | None:
    """The data folder from ``$HMAT_DATA_DIR``, or None when unset (raises if ``required``)."""
    value = os.environ.get(DATA_ENV)
    if not value:
        if required:
            raise FileNotFoundError(
                f"no data folder: set {DATA_ENV} to a folder with weights/ and imagenet-val-1300/ "
                f"(in this project's CI: {DATA_ENV}=../shared/data)"
            )
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{DATA_ENV}={value!r} is not a folder")
    return path
