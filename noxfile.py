"""Sessions for tests, the book and lint.

    nox -s tests                       # pytest (extra arguments after --)
    nox -s book                        # execute every notebook (quick profile), build the HTML book
    nox -s book -- --profile full      # paper scale
    nox -s book -- --only primer ledger   # re-execute only these notebooks, then build
    nox -s book -- --jobs 2            # notebooks that time nothing run two at a time
    nox -s lint                        # ruff + CITATION.cff validation

tests, book (and bench) share ONE virtual environment, ``.nox/hmat-env``, with ``hmat[all]``
and the book's own package ``hmatbook`` (``book/``) installed editable: torch alone is gigabytes,
so it is installed once, not once per session. The environment is refreshed only when
pyproject.toml or book/pyproject.toml (or the Python version) changes. Set ``HMAT_PYTHON`` to
choose the interpreter that creates it (default: the one running nox).

This file imports nothing outside the standard library and nox: YAML is read by the shared
environment's Python, so ``python -m pip install nox`` is all a fresh machine needs.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import hashlib
import json
import math
import os
import pprint
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).resolve().parent
ENV_DIR = ROOT / ".nox" / "hmat-env"
STAMP = ENV_DIR / "hmat-env.stamp"
KERNEL = "hmat"
BOOK = ROOT / "book"
EXECUTED = BOOK / "_executed"  # copy of the book sources with executed notebooks (ignored)
RESULTS = EXECUTED / "_results"  # verdicts and provenance of this build (HMAT_RESULTS_DIR)
BUILD = BOOK / "_build"
FIGURES = BUILD / "figures"  # every figure as PNG + PDF (HMAT_FIGURES_DIR)
LOGS = BUILD / "logs"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------- shared environment
def _bin(name: str) -> str:
    return str(ENV_DIR / ("Scripts" if os.name == "nt" else "bin") / name)


def _env_stamp() -> str:
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    h.update((BOOK / "pyproject.toml").read_bytes())
    h.update(os.environ.get("HMAT_PYTHON", sys.executable).encode())
    return h.hexdigest()


def _shared_env(session: nox.Session) -> Path:
    """Create or refresh ``.nox/hmat-env`` (hmat[all] and hmatbook editable + the ``hmat``
    Jupyter kernel).

    Returns the environment's bin folder. Reinstalls only when a pyproject.toml changed. Used by
    every session that needs the package (tests, book, bench).
    """
    python = os.environ.get("HMAT_PYTHON", sys.executable)
    stamp = _env_stamp()
    if STAMP.exists() and STAMP.read_text().strip() == stamp and Path(_bin("python")).exists():
        session.log(f"shared environment up to date: {ENV_DIR}")
        return Path(_bin("python")).parent
    t0 = time.perf_counter()
    if not Path(_bin("python")).exists():
        session.log(f"creating the shared environment {ENV_DIR} with {python}")
        session.run(python, "-m", "venv", str(ENV_DIR), external=True)
    # CI: no progress bars, no version nagging.
    quiet = ["--progress-bar", "off", "--disable-pip-version-check"]
    session.run(_bin("python"), "-m", "pip", "install", *quiet, "-e", f"{ROOT}[all]",
                "-e", str(BOOK), external=True)
    session.run(_bin("python"), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL,
                "--display-name", "Python (hmat)", external=True)
    STAMP.write_text(stamp + "\n")
    session.log(f"shared environment ready in {time.perf_counter() - t0:.0f} s: {ENV_DIR}")
    return Path(_bin("python")).parent


def _read_yaml(path: Path) -> object:
    """Parse a YAML file with the shared environment's PyYAML (nox itself has none)."""
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    out = subprocess.run([_bin("python"), "-c", code, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


# --------------------------------------------------------------------------- tests
@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run pytest in the shared environment; arguments after ``--`` go to pytest."""
    _shared_env(session)
    session.run(_bin("python"), "-m", "pytest", *session.posargs, external=True)


# --------------------------------------------------------------------------- book
def _toc_files(toc: dict) -> list[str]:
    """Every file of the table of contents, in reading order (root first)."""
    files = [toc["root"]]

    def walk(entries: list) -> None:
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            for key in ("sections", "chapters"):
                walk(e.get(key))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return [re.sub(r"\.(ipynb|md)$", "", f) for f in files]


def _notebooks_in_toc(session: nox.Session) -> list[Path]:
    """The notebooks of book/_toc.yml in reading order; stops if an entry has no source file."""
    files = _toc_files(_read_yaml(BOOK / "_toc.yml"))
    missing = [f for f in files
               if not (BOOK / f"{f}.ipynb").exists() and not (BOOK / f"{f}.md").exists()]
    if missing:
        session.error(f"book/_toc.yml lists {missing}, but no such .ipynb or .md exists in book/")
    return [BOOK / f"{f}.ipynb" for f in files if (BOOK / f"{f}.ipynb").exists()]


def _copy_sources() -> None:
    """Mirror the book's non-notebook sources into book/_executed (notebooks handled apart);
    the book's Python package (hmatbook, its pyproject.toml and egg-info) is no page source."""
    ignore = shutil.ignore_patterns("_build", "_executed", "*.ipynb", ".ipynb_checkpoints",
                                    "__pycache__", "hmatbook", "pyproject.toml", "*.egg-info")
    shutil.copytree(BOOK, EXECUTED, ignore=ignore, dirs_exist_ok=True)


# The parts of MathJax 3 (from the PyPI package django-static-mathjax) that render TeX as HTML:
# the book's formulas then display offline and from file://, with no CDN.
_MATHJAX_PARTS = ("tex-chtml.js", "input", "output", "a11y", "ui", "LICENSE")


def _copy_mathjax(session: nox.Session) -> None:
    """Copy MathJax from the shared environment into the book (_extra/_static/mathjax)."""
    found = subprocess.run(
        [_bin("python"), "-c", "import mathjax, pathlib; "
         "print(pathlib.Path(mathjax.__file__).parent / 'static' / 'mathjax')"],
        capture_output=True, text=True)
    src = Path(found.stdout.strip()) if found.returncode == 0 else None
    if src is None or not (src / "es5" / "tex-chtml.js").exists():
        session.error("MathJax not found in the shared environment (package "
                      "django-static-mathjax, part of hmat[book]); formulas would need a CDN")
    # not under _static: jupyter-book would load every .js file there on every page
    shutil.rmtree(EXECUTED / "_static" / "mathjax", ignore_errors=True)
    dest = EXECUTED / "_extra" / "_static" / "mathjax"
    dest.mkdir(parents=True, exist_ok=True)
    for part in _MATHJAX_PARTS:
        path = src / "es5" / part if part != "LICENSE" else src / part
        if path.is_dir():
            shutil.copytree(path, dest / part, dirs_exist_ok=True)
        else:
            shutil.copy2(path, dest / part)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failure_text(nb_out: Path, log: Path) -> str:
    """The failing cell and its error, read from papermill's output notebook (or the log)."""
    try:
        nb = json.loads(nb_out.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb.get("cells", [])):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    src = "".join(cell.get("source", "")).strip().splitlines()
                    tb = _ANSI.sub("", "\n".join(out.get("traceback", []))).splitlines()
                    shown = "\n    ".join(src[:8] + (["..."] if len(src) > 8 else []))
                    count = cell.get("execution_count")
                    return (f"cell {i} of the executed copy (execution count {count}):\n"
                            f"    {shown}\n"
                            f"{out.get('ename')}: {out.get('evalue')}\n"
                            "--- end of the cell's traceback ---\n" + "\n".join(tb[-25:]))
    except (OSError, ValueError):
        pass
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    return "no cell error recorded (kernel died or papermill failed); end of its log:\n" + \
        "\n".join(lines[-12:])


def _tee(stream, sink, log) -> None:
    for chunk in iter(lambda: stream.read1(4096), b""):
        log.write(chunk)
        if sink is not None:
            sink.write(chunk.decode(errors="replace"))
            sink.flush()


def _yaml_safe_json(v) -> str:
    """JSON that PyYAML (YAML 1.1, which papermill uses to read ``-f``) reads back as the same
    values: a float such as 1e-06 has no dot, and YAML 1.1 would read it as the string
    "1e-06" (the full profile's primer got ``tol='1e-06'``); it is written 1.0e-06."""
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"a notebook parameter must be finite, got {v}")
        r = repr(v)
        mantissa, e, exponent = r.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else r
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_safe_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_yaml_safe_json(x)}"
                               for k, x in v.items()) + "}"
    return json.dumps(v)


def _papermill(nb: Path, out: Path, params: dict, env: dict, log: Path, echo: bool = True,
               limit: float | None = None) -> int:
    """Execute one notebook with papermill in the ``hmat`` kernel; output is teed to ``log``."""
    params_file = log.with_suffix(".params.json")
    params_file.write_text(_yaml_safe_json(params) + "\n")
    cmd = [_bin("papermill"), str(nb), str(out), "-k", KERNEL, "--language", "python",
           "-f", str(params_file), "--cwd", str(out.parent)]
    if IN_CI:
        cmd.append("--no-progress-bar")
    return _run_logged(cmd, env, log, echo=echo, limit=limit)


def _runs_alone(nb: Path) -> bool:
    """A notebook runs alone unless its metadata says ``"hmat": {"times": false}`` (it measures
    no time) and gives no ``"runs_alone"`` reason (e.g. it reads what the others recorded)."""
    meta = json.loads(nb.read_text(encoding="utf-8")).get("metadata", {}).get("hmat", {})
    return meta.get("times", True) is not False or bool(meta.get("runs_alone"))


def _schedule(selected: list[Path], jobs: int) -> list[list[Path]]:
    """Groups of notebooks in reading order: consecutive notebooks that time nothing form one
    group that runs ``jobs`` at a time; a notebook that measures time (or reads the others'
    results) is a group of its own and never runs beside another."""
    groups: list[list[Path]] = []
    current: list[Path] = []
    for nb in selected:
        if jobs > 1 and not _runs_alone(nb):
            current.append(nb)
            continue
        if current:
            groups.append(current)
            current = []
        groups.append([nb])
    if current:
        groups.append(current)
    return groups


# the widest code line the book shows without scrolling (hmatbook.style.CODE_COLUMN_CHARS)
CODE_COLUMN_CHARS = 84


def _assignment(name: str, value: str, note: str) -> list[str]:
    """``name = value  # note`` as lines of the parameters cell the book shows: one line when it
    fits the column, else the note as a comment above and the value wrapped (pprint)."""
    line = f"{name} = {value}  # {note}"
    if len(line) <= CODE_COLUMN_CHARS:
        return [line]
    comment = textwrap.wrap(note, CODE_COLUMN_CHARS, initial_indent="# ",
                            subsequent_indent="# ", break_on_hyphens=False)
    try:
        body = pprint.pformat(ast.literal_eval(value), compact=True,
                              width=max(20, CODE_COLUMN_CHARS - len(name) - 3)).splitlines()
    except (ValueError, SyntaxError):
        body = [value]
    return [*comment, f"{name} = {body[0]}", *(" " * (len(name) + 3) + x for x in body[1:])]


def _show_parameters_once(nb_path: Path, profile: str) -> None:
    """Show a page's parameters once: papermill runs the notebook's ``parameters`` cell and then
    injects a second cell with the profile's values. The book keeps the original cell (with its
    comments), its overridden values replaced by the values of this run, and hides the
    injected one (tag ``remove-cell``); the values shown are the values that ran."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    tagged = {t: i for i, c in enumerate(cells) for t in c.get("metadata", {}).get("tags", [])}
    if "parameters" not in tagged or "injected-parameters" not in tagged:
        return
    orig, inj = cells[tagged["parameters"]], cells[tagged["injected-parameters"]]
    inj_src = "".join(inj["source"])
    values = {}
    for node in ast.parse(inj_src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.get_source_segment(inj_src, node.value)
    src = "".join(orig["source"])
    if src.startswith("# parameters of this run"):
        return  # merged already
    lines = src.splitlines()
    done = set()
    for node in reversed(ast.parse(src).body):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and
                isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name not in values:
            continue
        done.add(name)
        old = ast.get_source_segment(src, node.value)
        try:
            same = ast.literal_eval(old) == ast.literal_eval(values[name])
        except (ValueError, SyntaxError):
            same = old == values[name]
        if same:
            continue
        note = f"{profile} profile (notebook default: {' '.join(old.split())})"
        lines[node.lineno - 1:node.end_lineno] = _assignment(name, values[name], note)
    extra = [x for k, v in values.items() if k not in done
             for x in _assignment(k, v, f"{profile} profile")]
    head = f"# parameters of this run (profile {profile}; see book/profiles/{profile}.yml)"
    merged = "\n".join([head, *lines, *extra])
    orig["source"] = merged.splitlines(keepends=True)
    tags = inj.setdefault("metadata", {}).setdefault("tags", [])
    if "remove-cell" not in tags:
        tags.append("remove-cell")
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _publish_downloads() -> None:
    """Each page's executed notebook and every figure (PDF, PNG) into the book's _static, for
    the download links of the pages' summary boxes (hmatbook.style.DOWNLOADS_URL)."""
    dest = EXECUTED / "_static" / "downloads"
    (dest / "notebooks").mkdir(parents=True, exist_ok=True)
    (dest / "figures").mkdir(parents=True, exist_ok=True)
    for nb in (EXECUTED / "notebooks").glob("*.ipynb"):
        shutil.copy2(nb, dest / "notebooks" / nb.name)
    for fig in FIGURES.glob("*.*"):
        if fig.suffix in (".pdf", ".png"):
            shutil.copy2(fig, dest / "figures" / fig.name)


# The full profile's wall time per notebook, as measured by the builds that ran it (each entry
# with its date, commit and machine): committed, so that the Reproduce page can state it.
FULL_TIMES = ROOT / "data" / "book_times_full.json"


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores"


def _commit() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    # the times file itself changes with every timed notebook: not a change of the code
    spec = ["--", "."]
    if FULL_TIMES.is_relative_to(ROOT):
        spec.append(f":(exclude){FULL_TIMES.relative_to(ROOT).as_posix()}")
    changed = git("status", "--porcelain", "--untracked-files=no", *spec).strip()
    return head + ("+changes" if changed else "")


def _record_full_time(name: str, seconds: float, beside_others: bool,
                      stopped: bool = False) -> None:
    """Write one notebook's full-profile wall time into data/book_times_full.json (``stopped``:
    it was killed by --time-limit after ``seconds``, so its time is only a lower bound). The
    15-minute load average at the end says whether other work shared the cores."""
    data = json.loads(FULL_TIMES.read_text()) if FULL_TIMES.exists() else {
        "about": "wall time of each notebook under the full profile, written by "
                 "`nox -s book -- --profile full` (one entry per notebook, from the build that "
                 "last ran it)", "notebooks": {}}
    data["notebooks"][name] = {
        "seconds": round(seconds, 1), "stopped": stopped,
        "load_15min": round(os.getloadavg()[2], 1), "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": _commit(), "machine": _machine(), "ran_beside_others": beside_others}
    FULL_TIMES.write_text(json.dumps(data, indent=1) + "\n")


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 7200:
        return f"{s / 3600:.1f} h"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _write_run_times(profile: str, notebooks: list[Path], timings: dict) -> None:
    """The Reproduce page's table of wall times (book/_executed/_generated/run_times.md): this
    build's times, and the full profile's from data/book_times_full.json, or a plain statement
    that it has not been timed."""
    lines = [f"**This build** (profile `{profile}`, {time.strftime('%Y-%m-%d', time.gmtime())}, "
             f"commit `{_commit()}`, {_machine()}):", "",
             "| notebook | wall time | |", "| --- | --- | --- |"]
    for nb in notebooks:
        t = timings.get(nb.stem, {})
        note = t.get("status", "")
        note = "ran beside other notebooks (`--jobs`)" if t.get("ran_beside_others") else (
            "" if note == "ok" else note)
        lines.append(f"| {nb.stem} | {_fmt_seconds(t.get('seconds'))} | {note} |")
    lines.append("")
    full = json.loads(FULL_TIMES.read_text())["notebooks"] if FULL_TIMES.exists() else {}
    if not full:
        lines.append("**The full profile** (`nox -s book -- --profile full`) **has not been timed "
                     "end to end yet**: `data/book_times_full.json`, which a full-profile build "
                     "writes, holds no notebook's time. No time is estimated here.")
    else:
        timed = [nb for nb in notebooks if nb.stem in full]
        missing = [nb.stem for nb in notebooks if nb.stem not in full]
        total = sum(full[nb.stem]["seconds"] for nb in timed)
        stopped = any(full[nb.stem].get("stopped") for nb in timed)
        lines += [f"**The full profile**, as measured by the builds that ran it "
                  f"(`data/book_times_full.json`; {len(timed)} of {len(notebooks)} notebooks, "
                  f"{'more than ' if stopped else ''}{_fmt_seconds(total)} in all). "
                  "*Load* is the machine's 15-minute load average when the notebook ended: "
                  "above the number of cores, other work shared them and the time is inflated.",
                  "", "| notebook | wall time | load | date | commit | machine |",
                  "| --- | --- | --- | --- | --- | --- |"]
        notes = []  # an entry's "note" (written by hand: how that run differed from a build)
        for nb in timed:
            e = full[nb.stem]
            wall = _fmt_seconds(e["seconds"])
            if e.get("stopped"):
                wall = f"more than {wall} (stopped by `--time-limit`)"
            if e.get("note"):
                notes.append(f"{len(notes) + 1}. {nb.stem}: {e['note']}")
                wall = f"{wall} (note {len(notes)})"
            load = f"{e['load_15min']} on {e['cores']} cores" if "load_15min" in e else "-"
            lines.append(f"| {nb.stem} | {wall} | {load} | {e['date']} | "
                         f"`{e['commit']}` | {e['machine']} |")
        if notes:
            lines += ["", "Notes:", "", *notes]
        if missing:
            lines += ["", f"Not yet timed under the full profile: {', '.join(missing)}."]
    out = EXECUTED / "_generated" / "run_times.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _book_args(session: nox.Session) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nox -s book --", description="Execute and build the book.")
    p.add_argument("--profile", default="quick",
                   help="parameter profile: a file book/profiles/<profile>.yml (quick, full)")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help="execute only these notebooks (stems, e.g. primer part1_intro); the "
                        "others keep their earlier executed copies (or appear unexecuted)")
    p.add_argument("--no-html", action="store_true", help="execute notebooks, skip jupyter-book")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop a notebook that runs longer than this; under the full profile "
                        "its time is recorded as 'more than SECONDS' and the build goes on")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N notebooks that time nothing at once (notebook metadata "
                        "hmat.times = false); a notebook that measures time always runs alone")
    args = p.parse_args(session.posargs)
    if args.jobs < 1:
        session.error(f"--jobs must be >= 1, got {args.jobs}")
    return args


@nox.session(venv_backend="none")
def book(session: nox.Session) -> None:
    """Execute every notebook of the table of contents with papermill, then jupyter-book build."""
    args = _book_args(session)
    _shared_env(session)
    profile_file = BOOK / "profiles" / f"{args.profile}.yml"
    if not profile_file.exists():
        known = sorted(p.stem for p in (BOOK / "profiles").glob("*.yml"))
        session.error(f"--profile {args.profile!r}: no {profile_file}; known profiles: {known}")
    profile = _read_yaml(profile_file) or {}
    notebooks = _notebooks_in_toc(session)
    names = [nb.stem for nb in notebooks]
    unknown_keys = sorted(set(profile) - set(names))
    if unknown_keys:
        session.error(f"{profile_file.name}: no notebook in _toc.yml for {unknown_keys}")
    if args.only:
        missing = sorted(set(args.only) - set(names))
        if missing:
            session.error(f"--only {missing}: not a notebook of book/_toc.yml; known: {names}")

    run_file = EXECUTED / "_run.json"
    if args.only is None:
        # A full run starts clean: no stale executed copies, verdicts, figures or pages.
        for folder in (EXECUTED, BUILD):
            shutil.rmtree(folder, ignore_errors=True)
    elif run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous.get("profile") != args.profile:
            session.warn(f"earlier executed copies used profile {previous.get('profile')!r}; "
                         f"this run uses {args.profile!r}: the book mixes both")
    for folder in (EXECUTED, RESULTS, FIGURES, LOGS):
        folder.mkdir(parents=True, exist_ok=True)
    _copy_sources()
    _copy_mathjax(session)
    run_file.write_text(json.dumps({"profile": args.profile}))

    env = dict(os.environ)
    env.update({
        "HMAT_RESULTS_DIR": str(RESULTS),
        "HMAT_FIGURES_DIR": str(FIGURES),
        "HMAT_PROFILE": args.profile,
        # the env's kernels first, even before a user-level kernel of the same name
        "JUPYTER_PATH": str(ENV_DIR / "share" / "jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PATH": str(Path(_bin("python")).parent) + os.pathsep + os.environ.get("PATH", ""),
    })
    if "HMAT_DATA_DIR" in env:
        env["HMAT_DATA_DIR"] = str(Path(env["HMAT_DATA_DIR"]).expanduser().resolve())
    session.log(f"profile {args.profile}; HMAT_DATA_DIR={env.get('HMAT_DATA_DIR', '(unset)')}")

    timing_file = BUILD / "timings.json"
    timings = {}
    if args.only is not None and timing_file.exists():
        old = json.loads(timing_file.read_text())
        timings = {n["name"]: {**n, "status": "reused" if n["status"] in ("ok", "reused")
                               else n["status"]} for n in old.get("notebooks", [])}
    selected = [nb for nb in notebooks if args.only is None or nb.stem in args.only]
    for nb in notebooks:
        out = EXECUTED / nb.relative_to(BOOK)
        out.parent.mkdir(parents=True, exist_ok=True)
        if nb not in selected and not out.exists():
            shutil.copy2(nb, out)
            timings[nb.stem] = {"name": nb.stem, "seconds": None, "status": "not executed"}
            session.warn(f"{nb.stem}: no earlier executed copy, the book shows it unexecuted")
    lock = threading.Lock()

    def run_one(nb: Path) -> tuple[Path, int, float]:
        k = notebooks.index(nb) + 1
        out = EXECUTED / nb.relative_to(BOOK)
        params = {"profile": args.profile, **(profile.get(nb.stem) or {})}
        session.log(f"[{k}/{len(notebooks)}] executing {nb.relative_to(ROOT)} with {params}")
        log = LOGS / f"{nb.stem}.log"
        t0 = time.perf_counter()
        rc = _papermill(nb, out, params, env, log, echo=args.jobs == 1, limit=args.time_limit)
        seconds = time.perf_counter() - t0
        with lock:
            timings[nb.stem] = {"name": nb.stem, "seconds": round(seconds, 1),
                                "status": {0: "ok", STOPPED: "stopped"}.get(rc, "failed"),
                                "profile": args.profile,
                                "ran_beside_others": args.jobs > 1 and not _runs_alone(nb)}
            _write_timings(timing_file, args.profile, notebooks, timings)
        if rc == 0:
            _show_parameters_once(out, args.profile)
            session.log(f"{nb.stem}: done in {seconds:.1f} s")
            if args.profile == "full":
                with lock:
                    _record_full_time(nb.stem, seconds, timings[nb.stem]["ran_beside_others"])
        elif rc == STOPPED:
            session.warn(f"{nb.stem}: stopped after {seconds:.0f} s (--time-limit)")
            if args.profile == "full":
                with lock:
                    _record_full_time(nb.stem, seconds, timings[nb.stem]["ran_beside_others"],
                                      stopped=True)
        return nb, rc, seconds

    t_all = time.perf_counter()
    for group in _schedule(selected, args.jobs):
        if len(group) == 1:
            results = [run_one(group[0])]
        else:
            session.log(f"running {len(group)} notebooks that time nothing, {args.jobs} at a "
                        f"time: {[nb.stem for nb in group]}")
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
                results = list(pool.map(run_one, group))
        for nb, rc, seconds in results:
            if rc not in (0, STOPPED):
                out, log = EXECUTED / nb.relative_to(BOOK), LOGS / f"{nb.stem}.log"
                session.error(f"notebook {nb.stem} FAILED after {seconds:.0f} s "
                              f"(executed copy: {out}, log: {log})\n{_failure_text(out, log)}")
    exec_seconds = time.perf_counter() - t_all

    html_seconds = None
    html_failure = None
    if not args.no_html:
        # Warnings are errors, except when --only left some notebooks unexecuted (their glue
        # keys are missing by construction).
        unexecuted = [n for n, t in timings.items() if t.get("status") == "not executed"]
        strict = ["-W", "--keep-going"] if not unexecuted else []
        if unexecuted:
            session.warn(f"unexecuted notebooks {unexecuted}: building without -W")
        _publish_downloads()
        _write_run_times(args.profile, notebooks, timings)
        cmd = [_bin("jupyter-book"), "build", str(EXECUTED), "--path-output", str(BOOK),
               "--builder", "html", "--all", *strict]
        session.log(" ".join(cmd))
        t0 = time.perf_counter()
        rc = _run_logged(cmd, env, LOGS / "jupyter-book.log")
        html_seconds = round(time.perf_counter() - t0, 1)
        if rc != 0:
            html_failure = _build_problems(LOGS / "jupyter-book.log")
    _write_timings(timing_file, args.profile, notebooks, timings,
                   exec_seconds=round(exec_seconds, 1), html_seconds=html_seconds)

    session.log("wall time per notebook (s):")
    for nb in notebooks:
        t = timings.get(nb.stem, {})
        sec = "-" if t.get("seconds") is None else f"{t['seconds']:8.1f}"
        session.log(f"  {nb.stem:<32} {sec:>8}  {t.get('status', '')}")
    session.log(f"notebooks: {exec_seconds:.0f} s, jupyter-book: {html_seconds} s; "
                f"timings in {timing_file}")
    if html_failure is not None:
        session.error("jupyter-book build failed (warnings are errors); log: "
                      f"{LOGS / 'jupyter-book.log'}\n{html_failure}")
    if html_seconds is not None:
        index = BUILD / "html" / "index.html"
        session.log(f"the book: {index.as_uri()}")


# exit code of a notebook stopped by --time-limit (as timeout(1) reports it)
STOPPED = 124


def _run_logged(cmd: list[str], env: dict, log: Path, echo: bool = True,
                limit: float | None = None) -> int:
    """Run ``cmd``, streaming its output to ``log`` (and to the terminal when ``echo``);
    returns the exit code, or STOPPED when it ran past ``limit`` seconds and was killed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=_tee,
                                  args=(proc.stdout, sys.stderr if echo else None, logf))
        reader.start()
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = STOPPED
        reader.join()
    return rc


def _build_problems(log: Path) -> str:
    """The WARNING/ERROR lines of a jupyter-book log (or its end when there are none)."""
    lines = [_ANSI.sub("", x) for x in
             log.read_text(encoding="utf-8", errors="replace").splitlines()]
    problems = [x for x in lines if "WARNING" in x or "ERROR" in x or "Exception" in x]
    return "\n".join(problems[:40] or lines[-30:])


def _write_timings(path: Path, profile: str, notebooks: list[Path], timings: dict,
                   **totals) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"profile": profile, **totals,
            "notebooks": [timings[nb.stem] for nb in notebooks if nb.stem in timings]}
    path.write_text(json.dumps(data, indent=1) + "\n")


# --------------------------------------------------------------------------- bench
@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks of Part III with pytest-benchmark; JSON to bench-results/.

    ``nox -s bench`` (quick), ``nox -s bench -- --profile full`` (everything); other arguments
    go to pytest. Ratios to numpy, bandwidths and goals are in the JSON's ``"hmat"`` entry.
    """
    _shared_env(session)
    args = list(session.posargs)
    profile = "quick"
    if "--profile" in args:
        i = args.index("--profile")
        profile = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
    if profile not in ("quick", "full"):
        session.error(f"--profile must be quick or full, got {profile!r}")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"bench-{profile}-{stamp}.json"
    env = {"HMAT_BENCH_PROFILE": profile}
    if "HMAT_DATA_DIR" in os.environ:
        env["HMAT_DATA_DIR"] = str(Path(os.environ["HMAT_DATA_DIR"]).expanduser().resolve())
    session.run(_bin("python"), "-m", "pytest", str(ROOT / "tests" / "bench" / "bench_hmat.py"),
                f"--benchmark-json={path}", "--benchmark-columns=min,median,iqr,rounds",
                "--benchmark-sort=name", "-p", "no:cacheprovider", *args, external=True, env=env)
    shutil.copyfile(path, out / "latest.json")
    session.log(f"benchmark results: {path} (and bench-results/latest.json)")


# --------------------------------------------------------------------------- lint
@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and CITATION.cff validated by cffconvert (own small venv: it pins old jsonschema)."""
    session.install("ruff>=0.5", "cffconvert>=2.0")
    failed = []
    for cmd in (["ruff", "check", "."], ["cffconvert", "--validate", "-i", "CITATION.cff"]):
        try:
            session.run(*cmd)
        except nox.command.CommandFailed:
            failed.append(cmd[0])
    if failed:
        session.error(f"lint failed: {', '.join(failed)}")
