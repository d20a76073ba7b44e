"""hmat._threads: limit_threads (numba, BLAS, torch), blas_threads, available_threads."""

from __future__ import annotations

import sys

import numba
import pytest
from threadpoolctl import threadpool_info

import hmat
from hmat._threads import blas_threads


def _blas_counts():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_available_threads():
    n = hmat.available_threads()
    assert isinstance(n, int) and n >= 1


def test_limit_threads_sets_and_restores_numba_and_blas():
    before_numba, before_blas = numba.get_num_threads(), _blas_counts()
    with hmat.limit_threads(1):
        assert numba.get_num_threads() == 1
        assert all(c == 1 for c in _blas_counts())
    assert numba.get_num_threads() == before_numba and _blas_counts() == before_blas
    with hmat.limit_threads(None):  # None leaves every pool as it is
        assert numba.get_num_threads() == before_numba


def test_limit_threads_restores_after_an_error():
    before = numba.get_num_threads()
    with pytest.raises(RuntimeError), hmat.limit_threads(1):
        raise RuntimeError
    assert numba.get_num_threads() == before


def test_limit_threads_covers_torch_when_imported():
    torch = pytest.importorskip("torch")
    assert "torch" in sys.modules
    before = torch.get_num_threads()
    with hmat.limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_blas_threads():
    before = _blas_counts()
    with blas_threads(1):
        assert all(c == 1 for c in _blas_counts())
    assert _blas_counts() == before
    with blas_threads(None):
        assert _blas_counts() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match="threads"):
        with hmat.limit_threads(bad):
            pass
    with pytest.raises(ValueError, match="blas_threads"):
        with blas_threads(bad):
            pass
