"""Provenance of an executed notebook: profile, parameters, package versions, CPU, threads, commit.

Every notebook ends with ``provenance.report(profile, params, notebook="...")``; it shows a
collapsible table in the book and writes the same facts as JSON beside the run's verdicts.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import subprocess
import sys
from importlib import metadata

from .ledger import results_dir
from .paths import REPO_ROOT

PACKAGES = ("hmat", "hmatbook", "numpy", "scipy", "numba", "torch", "torchvision", "matplotlib",
            "papermill")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (sha or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def threads() -> dict:
    out = {"os.cpu_count": os.cpu_count()}
    try:
        out["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        import numba

        from hmat import _kernels

        out["numba"] = numba.get_num_threads()
        out["numba OpenMP wait policy"] = _kernels.WAIT_POLICY
    except ImportError:
        pass
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


def collect(profile: str, params: dict) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "profile": profile,
        "parameters": {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict))
                           else repr(v)) for k, v in params.items()},
        "python": sys.version.split()[0],
        "packages": versions,
        "cpu": cpu_model(),
        "threads": threads(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data_dir": os.environ.get("HMAT_DATA_DIR", "(unset)"),
    }


def report(profile: str, params: dict, notebook: str):
    """Show the provenance table (HTML, collapsible) and save it as JSON; returns the dict."""
    facts = collect(profile, params)
    facts["notebook"] = notebook
    folder = results_dir() / "provenance"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{notebook}.json").write_text(json.dumps(facts, indent=1), encoding="utf-8")
    rows = []
    for key, value in facts.items():
        text = json.dumps(value, indent=None) if isinstance(value, (dict, list)) else str(value)
        rows.append(f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
                    f"<td style='text-align:left'>{html.escape(text)}</td></tr>")
    body = ("<details><summary><b>Provenance of this page</b> (profile "
            f"<code>{html.escape(profile)}</code>)</summary><table>{''.join(rows)}</table>"
            "</details>")
    try:
        from IPython.display import HTML, display

        display(HTML(body))
    except ImportError:
        print(json.dumps(facts, indent=1))
    return facts
