"""Where offline data lives: the folder named by the environment variable ``HMAT_DATA_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HMAT_DATA_DIR"


def data_dir(required: bool = False) -> Path | None:
    """The data folder from ``$HMAT_DATA_DIR``, or None when unset (raises if ``required``)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        if required:
            raise FileNotFoundError(
                f"no data folder: set {ENV_VAR} to a folder with weights/ and imagenet-val-1300/ "
                f"(in this project's CI: {ENV_VAR}=../shared/data)"
            )
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{ENV_VAR}={value!r} is not a folder")
    return path
