"""hmat: hierarchical matrices (H-matrices) for neural-network weight matrices.

>>> import numpy as np, hmat
>>> A = 1.0 / (1.0 + np.abs(np.subtract.outer(np.arange(256), np.arange(256))))
>>> H = hmat.compress(A, tol=1e-6)
>>> bool(np.linalg.norm(A - H.to_dense()) <= 1e-6 * np.linalg.norm(A))
True

Importing ``hmat`` does not import torch; the PyTorch bridge lives in :mod:`hmat.nn`.
"""

from ._threads import available_threads, limit_threads
from .admissibility import AllAdmissible, StrongAdmissibility, WeakAdmissibility
from .build import compress
from .cluster import (
    CardinalitySplitter,
    ClusterTree,
    GeometricSplitter,
    PrincipalSplitter,
    cluster_data,
    cluster_geometric,
    cluster_index,
    cluster_tree,
)
from .compressors import ACA, RRQR, Accuracy, EntryBlock, LowRank, TruncatedSVD
from .hmatrix import Block, HMatrix
from .io import load
from .plot import plot_blocks
from .precision import STORAGES, Quantized, dequantize, quantize
from .qhmatrix import QuantizedHMatrix

__version__ = "0.1.0"

__all__ = [
    "compress", "HMatrix", "Block", "load", "plot_blocks",
    "Accuracy", "LowRank", "EntryBlock", "TruncatedSVD", "ACA", "RRQR",
    "ClusterTree", "cluster_tree", "cluster_index", "cluster_geometric", "cluster_data",
    "CardinalitySplitter", "GeometricSplitter", "PrincipalSplitter",
    "StrongAdmissibility", "WeakAdmissibility", "AllAdmissible",
    "limit_threads", "available_threads",
    "QuantizedHMatrix", "Quantized", "quantize", "dequantize", "STORAGES",
]
