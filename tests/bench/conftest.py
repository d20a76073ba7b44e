"""pytest-benchmark runner for Part III's measurements (``nox -s bench``); not part of the normal
test run (its files are ``bench_*.py``, outside pytest's ``test_*.py`` pattern).

The profile comes from ``HMAT_BENCH_PROFILE`` (quick or full). After the run, the JSON written by
``--benchmark-json`` gets, per product benchmark, the ratio of its median time to numpy's median
in the same group, the achieved bytes/s, and a summary (goals, roofline, machine) under
``"hmat"``: all computed from this one run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmatbook import bench_summary

#: the before/after of each kernel change (issue 11), measured when it was made; copied into the
#: JSON so that one file holds today's figures and the history that led to them
CHANGES = Path(__file__).with_name("changes.json")


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    changes = json.loads(CHANGES.read_text(encoding="utf-8")) if CHANGES.exists() else None
    output_json["hmat"] = bench_summary.summarize(output_json["benchmarks"], changes=changes)
