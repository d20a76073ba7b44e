"""hmat: hierarchical matrices (H-matrices) for neural-network weight matrices.

>>> import numpy as np, hmat
>>> A = 1.0 / (1.0 + np.abs(np.subtract.outer(np.arange(256), np.arange(256))))
>>> H = hmat.compress(A, tol=1e-6)
>>> bool(np.linalg.norm(A - H.to_dense()) <= 1e-6 * np.linalg.norm(A))
True

Importing ``hmat`` does not import torch; the PyTorch bridge lives in :mod:`hmat.nn`.
"""

from .admissibility import AllAdmissible, StrongAdmissibility, WeakAdmissibility
from .build import compress
from .cluster import ClusterTree, cluster_data, cluster_geometric, cluster_index
from .hmatrix import Block, HMatrix, load
from .lowrank import Accuracy, EntryBlock, aca, rrqr, svd
from .plot import plot_blocks
from ._threads import available_threads, limit_threads

__version__ = "0.1.0"

__all__ = [
    "compress", "HMatrix", "Block", "load", "plot_blocks",
    "Accuracy", "EntryBlock", "svd", "aca", "rrqr",
    "ClusterTree", "cluster_index", "cluster_geometric", "cluster_data",
    "StrongAdmissibility", "WeakAdmissibility", "AllAdmissible",
    "limit_threads", "available_threads",
]
