"""Save book figures as reusable files (PNG and PDF) beside the build.

The folder is ``$HMAT_FIGURES_DIR`` (``nox -s book`` sets ``book/_build/figures``), else
``./hmat-figures``.
"""

from __future__ import annotations

import os
from pathlib import Path

FIGURES_ENV = "HMAT_FIGURES_DIR"


def figures_dir() -> Path:
    path = Path(os.environ.get(FIGURES_ENV, "hmat-figures")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig, name: str) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` (150 dpi) and ``<name>.pdf``; returns the paths."""
    out = []
    for ext, kw in (("png", {"dpi": 150}), ("pdf", {})):
        path = figures_dir() / f"{name}.{ext}"
        fig.savefig(path, bbox_inches="tight", **kw)
        out.append(path)
    return out
