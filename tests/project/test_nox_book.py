"""The book session's helpers in noxfile.py: parameters shown once, the --jobs schedule, the
Reproduce page's table of wall times. (nox itself is not in the test environment: a stand-in
module lets the noxfile import.)"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noxfile():
    stand_in = types.ModuleType("nox")
    stand_in.options = types.SimpleNamespace()
    stand_in.session = lambda *a, **k: (lambda f: f)
    stand_in.Session = object
    command = types.ModuleType("nox.command")
    command.CommandFailed = Exception
    stand_in.command = command
    saved = {k: sys.modules.get(k) for k in ("nox", "nox.command")}
    sys.modules.update({"nox": stand_in, "nox.command": command})
    try:
        spec = importlib.util.spec_from_file_location("hmat_noxfile", ROOT / "noxfile.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _cell(source, tags=(), cell_type="code"):
    return {"cell_type": cell_type, "id": f"c{abs(hash(source)) % 10**8}", "metadata": {"tags":
            list(tags)}, "source": source, "outputs": [], "execution_count": None}


def test_parameters_shown_once_with_the_values_that_ran(noxfile, tmp_path):
    nb = {"cells": [
        _cell('profile = "quick"\nepochs = 2000   # Adam steps\nwidth = 256\n', ["parameters"]),
        _cell('# Parameters\nprofile = "full"\nepochs = 50000\nextra = [1, 2]\n',
              ["injected-parameters"]),
        _cell("print(epochs)")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    noxfile._show_parameters_once(path, "full")
    cells = json.loads(path.read_text())["cells"]
    shown = "".join(cells[0]["source"])
    assert 'profile = "full"  # full profile (notebook default: "quick")' in shown
    assert "epochs = 50000  # full profile (notebook default: 2000)" in shown
    assert "width = 256\n" in shown and "extra = [1, 2]  # full profile" in shown
    assert "remove-cell" in cells[1]["metadata"]["tags"]
    before = path.read_text()
    noxfile._show_parameters_once(path, "full")  # idempotent: nothing left to merge
    assert "remove-cell" in json.loads(path.read_text())["cells"][1]["metadata"]["tags"]
    assert before == path.read_text()


def test_parameters_reach_papermill_as_the_values_of_the_profile(noxfile):
    """papermill reads the parameters file with PyYAML (YAML 1.1), where 1e-06 is a string: the
    file the build writes must read back as the same numbers (the full profile's primer got
    tol='1e-06' before)."""
    import yaml

    params = {"profile": "full", "tols": [0.1, 1e-06, 1e-08, 2.5e-12, 1e20], "lr": 2.0e-3,
              "n": 3, "flag": True, "none": None, "name": 'a "b" 1e-06',
              "nested": {"epochs": 10000, "lr": 1e-05}}
    assert yaml.safe_load(noxfile._yaml_safe_json(params)) == params
    assert yaml.safe_load(json.dumps(params)) != params  # what plain JSON did
    with pytest.raises(ValueError, match="finite"):
        noxfile._yaml_safe_json({"x": float("nan")})


def test_long_parameters_are_wrapped_to_the_column(noxfile, tmp_path):
    """A value of the full profile too long for one shown line (Fig. 2's 21 ranks) gets its note
    as a comment above and its value wrapped, every line within the book's code column."""
    from hmatbook.style import CODE_COLUMN_CHARS

    assert noxfile.CODE_COLUMN_CHARS == CODE_COLUMN_CHARS
    ranks = list(range(0, 101, 5))
    nb = {"cells": [
        _cell('profile = "quick"\nranks = [1, 5, 10]\n', ["parameters"]),
        _cell(f'# Parameters\nprofile = "full"\nranks = {ranks}\n', ["injected-parameters"])],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    noxfile._show_parameters_once(path, "full")
    shown = "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert max(len(line) for line in shown.splitlines()) <= CODE_COLUMN_CHARS
    assert "# full profile (notebook default: [1, 5, 10])" in shown
    namespace = {}
    exec(shown, namespace)  # the wrapped cell is still the same Python
    assert namespace["ranks"] == ranks and namespace["profile"] == "full"


def test_schedule_never_runs_a_timing_notebook_beside_another(noxfile, tmp_path):
    def nb(name, **meta):
        p = tmp_path / f"{name}.ipynb"
        p.write_text(json.dumps({"cells": [], "metadata": {"hmat": meta} if meta else {}}))
        return p

    a, b = nb("a", times=False), nb("b", times=False)
    t = nb("t", times=True)
    u = nb("u")  # no marker: treated as timing (the safe default)
    c, led = nb("c", times=False), nb("ledger", times=False, runs_alone="reads the results")
    groups = noxfile._schedule([a, b, t, u, c, led], jobs=2)
    assert [[p.stem for p in g] for g in groups] == [["a", "b"], ["t"], ["u"], ["c"], ["ledger"]]
    assert [len(g) for g in noxfile._schedule([a, b, c], jobs=1)] == [1, 1, 1]


def test_reproduce_times_say_plainly_when_the_full_profile_was_not_timed(noxfile, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(noxfile, "EXECUTED", tmp_path)
    monkeypatch.setattr(noxfile, "FULL_TIMES", tmp_path / "none.json")
    nbs = [Path("notebooks/a.ipynb"), Path("notebooks/b.ipynb")]
    timings = {"a": {"seconds": 12.3, "status": "ok"}, "b": {"seconds": 250.0, "status": "ok"}}
    noxfile._write_run_times("quick", nbs, timings)
    text = (tmp_path / "_generated" / "run_times.md").read_text()
    assert "| a | 12 s |" in text and "| b | 4.2 min |" in text
    assert "has not been timed end to end yet" in text
    monkeypatch.setattr(noxfile, "FULL_TIMES", tmp_path / "full.json")
    noxfile._record_full_time("a", 3723.0, False)
    noxfile._write_run_times("quick", nbs, timings)
    text = (tmp_path / "_generated" / "run_times.md").read_text()
    assert "1 of 2 notebooks" in text and "| a | 62.0 min |" in text
    assert "Not yet timed under the full profile: b." in text and "Notes:" not in text
    data = json.loads((tmp_path / "full.json").read_text())
    data["notebooks"]["a"]["note"] = "it trained its network itself"
    (tmp_path / "full.json").write_text(json.dumps(data))
    noxfile._write_run_times("quick", nbs, timings)
    text = (tmp_path / "_generated" / "run_times.md").read_text()
    assert "| a | 62.0 min (note 1) |" in text and "1. a: it trained its network itself" in text
    assert noxfile._fmt_seconds(15565.0) == "4.3 h" and noxfile._fmt_seconds(7199.0) == "120.0 min"
