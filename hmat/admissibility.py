"""Admissibility conditions: which blocks of the block cluster tree may be stored in low rank."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from .cluster import ClusterTree

__all__ = ["Admissibility", "StrongAdmissibility", "WeakAdmissibility", "AllAdmissible",
           "make_admissibility"]


class Admissibility(Protocol):
    def __call__(self, rows: ClusterTree, s: int, cols: ClusterTree, t: int) -> bool: ...


@dataclass(frozen=True)
class StrongAdmissibility:
    """The thesis' rule ``max(diam(s), diam(t)) <= eta * dist(s, t)``; smaller eta: smaller
    admissible blocks, more of them."""

    eta: float = 1.0

    def __post_init__(self):
        if not isinstance(self.eta, (int, float)) or isinstance(self.eta, bool):
            raise TypeError(f"eta must be a real number >= 0, got {self.eta!r}")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {self.eta}")

    def __call__(self, rows: ClusterTree, s: int, cols: ClusterTree, t: int) -> bool:
        dist = rows.dist(s, cols, t)
        return dist > 0 and max(rows.diam(s), cols.diam(t)) <= self.eta * dist


@dataclass(frozen=True)
class WeakAdmissibility:
    """Every block whose clusters do not overlap is admissible (HODLR-like structure)."""

    def __call__(self, rows: ClusterTree, s: int, cols: ClusterTree, t: int) -> bool:
        return rows.dist(s, cols, t) > 0


@dataclass(frozen=True)
class AllAdmissible:
    """Every block is a candidate for low rank; used by the adaptive build, where the error test
    (not geometry) decides whether a block is kept in low rank or subdivided."""

    def __call__(self, rows: ClusterTree, s: int, cols: ClusterTree, t: int) -> bool:
        return True


def make_admissibility(admissibility, eta) -> Admissibility:
    """Resolve the ``admissibility``/``eta`` arguments of :func:`hmat.compress`."""
    if callable(admissibility) and not isinstance(admissibility, str):
        return admissibility
    if admissibility == "strong":
        return StrongAdmissibility(1.0 if eta is None else eta)
    if eta is not None:
        StrongAdmissibility(eta)  # still validate the value
    if admissibility == "weak":
        return WeakAdmissibility()
    if admissibility == "all":
        return AllAdmissible()
    raise ValueError(
        f"admissibility must be 'strong', 'weak', 'all' or a callable, got {admissibility!r}"
    )
