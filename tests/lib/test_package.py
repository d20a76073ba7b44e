"""The package surface: import hmat does not import torch, the public names, the docstring
example."""

from __future__ import annotations

import doctest
import subprocess
import sys

import hmat


def test_import_does_not_import_torch():
    # numba itself imports yaml (its config reader) when yaml is installed: import numba
    # first and look only at what hmat adds
    code = ("import sys, numba, scipy.linalg; before = set(sys.modules); "
            "import hmat, hmat.examples; added = {m.split('.')[0] for m in set(sys.modules) - "
            "before}; bad = {'torch', 'yaml', 'tqdm'} & (added | set(sys.modules) - {'yaml'}); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names():
    for name in hmat.__all__:
        assert hasattr(hmat, name), name
    assert isinstance(hmat.__version__, str)


def test_module_docstring_example():
    failed, tried = doctest.testmod(hmat, verbose=False)
    assert tried > 0 and failed == 0
