"""Save book figures as reusable files (PNG and PDF) beside the build.

The folder is ``$HMAT_FIGURES_DIR`` (``nox -s book`` sets ``book/_build/figures``), else
``./hmat-figures``.
"""

from __future__ import annotations

import os
from pathlib import Path

FIGURES_ENV = "HMAT_FIGURES_DIR"
# names saved by this process (one notebook's kernel): the page's download links
SAVED: list[str] = []


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
    if name not in SAVED:
        SAVED.append(name)
    return out


def saved() -> list[str]:
    """Names of the figures saved by this process, in order (each as .png and .pdf)."""
    return list(SAVED)
