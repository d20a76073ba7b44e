"""Shared pieces of the hmat.nn tests (torch is required here)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

torch.set_num_threads(1)


def _linear(m=40, n=30, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n, m, dtype=dtype)
    # smooth-plus-noise weight: some blocks are low rank, some are not
    i, j = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    smooth = 1.0 / (1.0 + np.abs(i / m - j / n) * 10)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(smooth, dtype=dtype) + 0.01 * lin.weight)
    return lin


@pytest.fixture
def make_linear():
    """``make_linear(m=40, n=30, dtype=torch.float64, seed=0)``: an nn.Linear whose weight is
    a smooth kernel plus noise."""
    return _linear
