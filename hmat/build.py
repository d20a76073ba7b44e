"""Building H-matrices: :func:`compress` validates its arguments and dispatches to the block tree
(:mod:`hmat.blocktree`), where the fixed-rank, adaptive and recompression builds live."""

from __future__ import annotations

import math
import time

import numpy as np

from . import blocktree
from ._threads import blas_threads as _blas_threads
from .admissibility import AllAdmissible, make_admissibility
from .cluster import ClusterTree, check_leaf_size, resolve_cluster
from .compressors import Accuracy, get_compressor
from .hmatrix import HMatrix
from .precision import check_precision

__all__ = ["compress"]


def _as_matrix(A):
    """Validate and convert a dense input: 2-D, non-empty, real, finite."""
    if hasattr(A, "detach") and hasattr(A, "cpu"):  # a torch tensor, without importing torch
        A = A.detach().cpu().numpy()
    a = np.asarray(A)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"A must hold real numbers (float32/float64 or integers), got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix, got {a.ndim} dimensions (shape {a.shape})")
    if a.size == 0:
        raise ValueError(f"A must not be empty, got shape {a.shape}")
    if a.dtype.kind != "f" or a.dtype.itemsize < 4:
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("A contains non-finite entries (nan or inf)")
    return a


def _is_entry_function(A) -> bool:
    return callable(A) and not hasattr(A, "__array__") and not hasattr(A, "shape")


def compress(
    A,
    rank: int | None = None,
    tol: float | None = None,
    *,
    method="svd",
    adaptive: bool = False,
    recompress: bool = False,
    norm: str = "fro",
    admissibility="strong",
    eta: float | None = None,
    leaf_size: int = 32,
    cluster="index",
    row_coords=None,
    col_coords=None,
    shape: tuple[int, int] | None = None,
    dtype=np.float64,
    blas_threads: int | None = 1,
    precision: str | None = None,
) -> HMatrix:
    """Approximate a matrix by an H-matrix.

    Parameters
    ----------
    A : array_like (m, n) or callable
        The matrix, or an entry function ``A(rows, cols) -> array`` of the original indices, in
        which case ``shape`` is required and no more than one block is formed at a time (with
        ``method="aca"`` admissible blocks are never formed at all).
    rank, tol : exactly one of them
        Fixed rank of every admissible block, or relative tolerance in (0, 1): per block for the
        standard build, global and certified (``||A - H||_F <= tol ||A||_F``) with ``adaptive``.
    method : "svd", "aca", "rrqr" (alias "qr") or a compressor
        A compressor is a callable ``(block, Accuracy) -> LowRank`` (see
        :mod:`hmat.compressors`), e.g. ``hmat.ACA(recompress=False)`` for the plain cross
        approximation.
    adaptive : bool
        Error-bounded adaptive subdivision (needs ``tol`` and an array ``A``).
    recompress : bool
        Merge children into a cheaper low-rank parent within the budget (needs ``tol``).
    norm : "fro" or "2"
        The norm of the per-block tolerance (adaptive builds use "fro").
    admissibility : "strong", "weak", "all" or a callable
        "strong" with ``eta`` (default 1), "weak" (HODLR), "all", or
        ``f(rows, s, cols, t) -> bool``; the adaptive build defaults to "all" (the error test
        decides).
    leaf_size : int
        Smallest cluster size; blocks of two leaves are stored dense.
    cluster : str, ClusterTree, (ClusterTree, ClusterTree) or splitter
        "index" (halve index ranges), "geometric" (needs ``row_coords``/``col_coords``),
        "data" (group similar rows/columns), a cluster tree (used for rows and columns of a
        square matrix), a ``(rows, cols)`` pair of trees, or a splitter ``points -> left mask``
        applied to the coordinates if given, else to the rows/columns of ``A``. A permutation
        is applied inside ``@``, so users always work in the original order.
    row_coords, col_coords : array_like (m, d) / (n, d), optional
        Coordinates of the rows and columns for geometric clustering.
    shape : (m, n)
        Only with an entry function.
    dtype : float32 or float64
        Only with an entry function (an array keeps its own floating dtype).
    blas_threads : int or None
        BLAS threads during the build (default 1; None leaves BLAS as it is): the build makes
        many small SVD/QR calls, where threaded BLAS gains little and, on a busy machine, loses
        10-100x to oversubscription.
    precision : None, "float64", "float32", "bfloat16", "float16", "int8" or "adaptive"
        Storage of the blocks (see :mod:`hmat.precision`). None (default): the input's dtype.
        "float64"/"float32": an :class:`HMatrix` in that dtype. "bfloat16", "float16", "int8"
        (scale per column of ``U``, per row of ``Vt`` and of dense blocks): every block in that
        type, a :class:`~hmat.qhmatrix.QuantizedHMatrix` whose ``info["rel_error_fro"]``
        counts the rounding. "adaptive" (needs ``tol`` and an array ``A``): per block the
        cheapest storage, per column of its factors or per row of a dense block, whose error
        (truncation and rounding, exact) stays within the block's share ``tol ||A_b||_F``, so
        that ``||A - H.to_dense()||_F <= tol ||A||_F`` holds with the standard build as with
        ``adaptive=True``; ``to_dense`` and products are float32 (float64 for ``tol < 1e-6``).

    Returns
    -------
    HMatrix
        With ``info`` holding the arguments, the build time and, for an array input, the exact
        relative error ``rel_error_fro`` (and ``certified_bound`` for adaptive builds).
    """
    with _blas_threads(blas_threads):
        return _compress(A, rank, tol, method, adaptive, recompress, norm, admissibility, eta,
                         leaf_size, cluster, row_coords, col_coords, shape, dtype, precision)


def _compress(A, rank, tol, method, adaptive, recompress, norm, admissibility, eta, leaf_size,
              cluster, row_coords, col_coords, shape, dtype, precision=None) -> HMatrix:
    t_start = time.perf_counter()
    if precision is not None:
        precision = check_precision(precision)
        if precision == "adaptive":
            if tol is None:
                raise ValueError("precision='adaptive' needs tol= (the relative error budget "
                                 "that truncation and rounding share)")
            if norm != "fro":
                raise ValueError("precision='adaptive' certifies the Frobenius norm: use "
                                 "norm='fro'")
            if _is_entry_function(A):
                raise ValueError("precision='adaptive' needs A as an array (exact block "
                                 "errors)")
    if (rank is None) == (tol is None):
        raise ValueError("give exactly one of rank= or tol=, got "
                         + ("both" if rank is not None else "neither"))
    accuracy = Accuracy(rank=rank, norm=norm) if rank is not None else Accuracy(rtol=tol,
                                                                                 norm=norm)
    if adaptive and tol is None:
        raise ValueError("adaptive=True needs tol= (the global relative error bound)")
    if recompress and tol is None:
        raise ValueError("recompress=True needs tol= (a fixed rank has no error budget)")
    if (adaptive or recompress) and norm != "fro":
        raise ValueError("adaptive and recompress certify the Frobenius norm: use norm='fro'")
    compressor = get_compressor(method)
    check = getattr(compressor, "check", None)
    if check is not None:  # ACA rejects a spectral tolerance even if no block is admissible
        check(accuracy)
    if adaptive and admissibility == "strong" and eta is None:
        admissible = AllAdmissible()
    else:
        admissible = make_admissibility(admissibility, eta)
    leaf_size = check_leaf_size(leaf_size)

    if _is_entry_function(A):
        if shape is None or len(shape) != 2 or min(shape) < 1:
            raise ValueError("an entry function A needs shape=(m, n) with m, n >= 1")
        if adaptive or recompress:
            raise ValueError("adaptive and recompress need A as an array (exact block errors)")
        entries, a = A, None
        m, n = int(shape[0]), int(shape[1])
        dt = np.dtype(precision if precision in ("float32", "float64") else dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
    else:
        entries, a = None, _as_matrix(A)
        original = a
        if precision in ("float32", "float64"):
            a = a.astype(precision, copy=False)
        m, n = a.shape
        dt = a.dtype

    if isinstance(cluster, tuple) and len(cluster) == 2:
        row_cluster, col_cluster = cluster
    elif isinstance(cluster, ClusterTree) and m != n:
        raise ValueError(f"one cluster tree serves a square matrix only; A is {m} x {n}: give a "
                         "(rows, cols) pair")
    else:
        row_cluster = col_cluster = cluster
    rows = resolve_cluster(row_cluster, m, leaf_size, row_coords, a, "row")
    cols = resolve_cluster(col_cluster, n, leaf_size, col_coords, None if a is None else a.T,
                           "col")
    if a is not None and not (rows.is_identity and cols.is_identity):
        a = np.ascontiguousarray(a[np.ix_(rows.perm, cols.perm)])
    src = blocktree.Blocks(rows, cols, dt, a=a, entries=entries)

    if not adaptive:
        root = blocktree.build_fixed(src, compressor, accuracy, admissible)
    elif getattr(compressor, "needs", "block") == "block":
        # a compressor that forms the block anyway: plan the partition from singular values
        # first (several times cheaper than factorising every candidate)
        root = blocktree.SpectralPlan(src, admissible).build(compressor, tol)
    else:
        root = blocktree.build_adaptive(src, compressor, tol, admissible)
    if recompress:
        blocktree.recompress(root, src, compressor, tol)

    quantized = precision not in (None, "float32", "float64")
    if quantized:
        out_dtype = np.float64 if precision == "adaptive" and tol < 1e-6 else np.float32
        H, err2 = blocktree.to_quantized(root, src, (m, n), precision, tol, out_dtype)
    else:
        H = blocktree.to_hmatrix(root, src, (m, n))
        err2 = blocktree.error2(root)
    H.info.update(
        method=getattr(method, "__name__", None) or (method if isinstance(method, str)
                                                     else repr(method)),
        rank=rank, tol=tol, norm=norm, adaptive=adaptive, recompress=recompress,
        admissibility=repr(admissible), leaf_size=leaf_size,
        cluster=cluster if isinstance(cluster, str) else repr(type(cluster).__name__),
        precision=precision, build_seconds=time.perf_counter() - t_start,
    )
    if a is not None:
        norm_a = float(np.linalg.norm(a.astype(np.float64)))
        H.info["norm_fro"] = norm_a
        # exact ||A - H||_F from the stored factors (leaf errors are independent: a partition)
        if original.dtype != a.dtype:  # precision= cast the input: measure against it
            diff = H.to_dense().astype(np.float64) - original
            norm_a = float(np.linalg.norm(original.astype(np.float64)))
            H.info["norm_fro"], err2 = norm_a, float(np.sum(diff * diff))
        H.info["rel_error_fro"] = math.sqrt(err2) / norm_a if norm_a else 0.0
        if (adaptive and not quantized) or precision == "adaptive":
            # every leaf was checked against its share with its stored (decoded) factors
            H.info["certified_bound"] = tol
    return H
