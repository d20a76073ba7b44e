"""The project frame: notebooks, table of contents, profiles, claims file, citation, built book."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]  # tests/project/ -> the checkout
BOOK = ROOT / "book"
NOTEBOOKS = sorted((BOOK / "notebooks").glob("*.ipynb"))
HTML_DIR = BOOK / "_build" / "html"


def toc_files() -> list[str]:
    """Every file of book/_toc.yml (root first), without suffix."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        assert "caption" in part, f"a part of _toc.yml has no caption: {part}"
        walk(part.get("chapters"))
    return [re.sub(r"\.(ipynb|md)$", "", f) for f in files]


def load_nb(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/notebooks holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nb = load_nb(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} have outputs; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace {path}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_nbformat(path):
    """Every notebook validates against its nbformat schema (cell ids included), so papermill
    and jupyter-book read it without warnings."""
    nb = load_nb(path)
    if (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5):
        missing = [i for i, c in enumerate(nb["cells"]) if "id" not in c]
        assert not missing, f"{path.name}: cells {missing} have no id"
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_with_profile(path):
    cells = load_nb(path)["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', need 1"
    assert tagged[0]["cell_type"] == "code"
    source = "".join(tagged[0]["source"])
    assert re.search(r"^profile\s*=\s*['\"]quick['\"]", source, re.M), \
        f"{path.name}: the parameters cell must define profile = \"quick\""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_provenance(path):
    code = [c for c in load_nb(path)["cells"] if c["cell_type"] == "code"]
    assert code and "provenance.report(" in "".join(code[-1]["source"]), \
        f"{path.name}: the last code cell must call provenance.report(profile, params, ...)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_shown_to_readers_fits_the_column(path):
    """Code cells the book shows (no hide/remove tag, e.g. the parameters cell) keep their lines
    within hmatbook.style.CODE_COLUMN_CHARS: longer lines scroll sideways in the page (the
    browser test measures the column)."""
    width = pytest.importorskip("hmatbook.style").CODE_COLUMN_CHARS
    hidden = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
    long = [(i, line) for i, c in enumerate(load_nb(path)["cells"])
            if c["cell_type"] == "code" and not hidden & set(c.get("metadata", {}).get("tags", []))
            for line in "".join(c["source"]).splitlines() if len(line) > width]
    assert not long, (f"{path.name}: {len(long)} shown code lines longer than {width} "
                      f"characters (cell, line): {long[:3]}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_plumbing_cells_are_no_toggles(path):
    """The provenance cell at the end of a page is plumbing: its output shows, its code is not
    one more "show code cell source" toggle (tag remove-input; pages that show all their code,
    like the primer, leave it untagged)."""
    last = [c for c in load_nb(path)["cells"] if c["cell_type"] == "code"][-1]
    tags = set(last.get("metadata", {}).get("tags", []))
    assert not tags & {"hide-input", "hide-cell"}, (
        f"{path.name}: the last (provenance) cell is a 'show code' toggle {sorted(tags)}; "
        "tag it remove-input")


def test_every_notebook_is_in_the_toc():
    listed = set(toc_files())
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.stem}" not in listed]
    assert not missing, f"notebooks not in book/_toc.yml: {missing}"


def test_every_toc_entry_exists():
    files = toc_files()
    absent = [f for f in files
              if not (BOOK / f"{f}.ipynb").exists() and not (BOOK / f"{f}.md").exists()]
    assert not absent, f"book/_toc.yml lists files that do not exist: {absent}"
    assert len(files) == len(set(files)), "book/_toc.yml lists a file twice"


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profile_keys_name_notebooks(profile):
    data = yaml.safe_load((BOOK / "profiles" / f"{profile}.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{profile}.yml must map notebook stems to parameters"
    stems = {p.stem for p in NOTEBOOKS}
    unknown = sorted(set(data) - stems)
    assert not unknown, f"{profile}.yml names no existing notebook: {unknown}"
    for name, params in data.items():
        assert params is None or isinstance(params, dict), f"{profile}.yml: {name} must be a map"
        assert "profile" not in (params or {}), f"{profile}.yml: {name} must not set 'profile'"


def test_claims_file_is_well_formed():
    claims = yaml.safe_load((ROOT / "data" / "claims.yml").read_text(encoding="utf-8"))["claims"]
    required = ("id", "source", "section", "claim", "metric", "criterion", "part")
    assert len(claims) >= 30
    for c in claims:
        missing = [k for k in required if not str(c.get(k, "")).strip()]
        assert not missing, f"claim {c.get('id')}: missing {missing}"
        assert c["source"] in ("thesis", "2409.07028", "companion"), \
            f"claim {c['id']}: source {c['source']!r} (thesis, \"2409.07028\" or companion)"
        assert c["part"] in ("I", "II", "III"), f"claim {c['id']}: part {c['part']!r}"
    ids = [c["id"] for c in claims]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate claim ids: {dupes}"
    assert {c["source"] for c in claims} == {"thesis", "2409.07028", "companion"}


CLAIMS = yaml.safe_load((ROOT / "data" / "claims.yml").read_text(encoding="utf-8"))["claims"]
COMPARISONS = (">", ">=", "<", "<=", "in")


@pytest.mark.parametrize("c", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_claim_has_notebook_history_and_criterion_as_data(c):
    """Every claim says which notebook records it (null: none yet), when its criterion last
    changed, and each change with old, new, reason; its test data are well formed."""
    assert "notebook" in c, f"{c['id']}: no notebook field (null if no notebook tests it yet)"
    assert str(c.get("criterion_since", "")).strip() and str(c.get("registered", "")).strip()
    assert "partly" not in c["criterion"], f"{c['id']}: 'partly' is no verdict"
    for h in c.get("history") or []:
        missing = [k for k in ("date", "old", "new", "reason") if not str(h.get(k, "")).strip()]
        assert not missing, f"{c['id']}: a history entry lacks {missing}"
        assert h["date"] <= c["criterion_since"]
    if c.get("history"):
        assert max(h["date"] for h in c["history"]) == c["criterion_since"]
    for name, t in (c.get("test") or {}).items():
        assert t["comparison"] in COMPARISONS, f"{c['id']}.{name}: {t['comparison']!r}"
        thr = t["threshold"]
        if t["comparison"] == "in":
            assert isinstance(thr, list) and len(thr) == 2 and thr[0] <= thr[1]
        else:
            assert isinstance(thr, (int, float))


def _code_of(nb_path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in load_nb(nb_path)["cells"]
                     if cell["cell_type"] == "code")


def test_each_claim_is_recorded_by_exactly_one_notebook():
    """A claim that names its notebook is recorded there and by no other notebook: its id (or,
    for Table I, the T1- pattern) appears in the code of exactly that notebook among those that
    call the ledger."""
    code = {nb.stem: _code_of(nb) for nb in NOTEBOOKS}
    recorders = {k: v for k, v in code.items() if "ledger.record" in v}
    for c in CLAIMS:
        if not c.get("notebook"):
            continue
        assert c["notebook"] in code, f"{c['id']}: notebook {c['notebook']} does not exist"
        key = "T1-" if c["id"].startswith("T1-") else c["id"]
        found = sorted(n for n, src in recorders.items()
                       if re.search(re.escape(key) + r"(?![\w-])" if key != "T1-" else key, src))
        assert found == [c["notebook"]], \
            f"{c['id']} is recorded by {found or 'no notebook'}, claims.yml says {c['notebook']}"


def test_citation_cff():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors", "version", "license", "type",
                "references"):
        assert key in cff, f"CITATION.cff lacks {key}"
    assert cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software"
    titles = " ".join(r["title"] for r in cff["references"])
    assert "Adaptive Error-Bounded Hierarchical Matrices" in titles
    assert "Approximation of Weight Matrices using Hierarchical Matrices" in titles
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                        re.M).group(1)
    assert str(cff["version"]) == version, "CITATION.cff and pyproject.toml disagree on version"


def test_readme_example_runs(tmp_path, monkeypatch):
    """The library example of README.md runs as printed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no ```python example"
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "blocks.png").stat().st_size > 0


def test_readme_picture_is_small_and_committed():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "README.md shows no picture"
    for src in images:
        path = ROOT / src
        assert path.exists(), f"README.md image {src} does not exist"
        assert path.stat().st_size < 200_000, f"{src} is larger than 200 kB"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in (("src",) if tag in ("img", "script", "source") else
                    ("href",) if tag in ("a", "link") else ()):
            if a.get(key):
                self.refs.append((tag, a[key]))


def _local_target(page: Path, ref: str) -> Path | None:
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path or ref.startswith(("#", "data:")):
        return None
    return (page.parent / unquote(parts.path)).resolve()


@pytest.mark.skipif(not (HTML_DIR / "index.html").exists(),
                    reason="the book is not built (run `nox -s book` first)")
def test_built_book_has_no_broken_local_links():
    # _static holds the themes' Jinja templates, not pages
    pages = sorted(p for p in HTML_DIR.rglob("*.html")
                   if "_static" not in p.relative_to(HTML_DIR).parts)
    broken = []
    n_images = 0
    for page in pages:
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for tag, ref in parser.refs:
            target = _local_target(page, ref)
            if target is None:
                continue
            n_images += tag == "img"
            if not target.exists():
                broken.append(f"{page.relative_to(HTML_DIR)}: <{tag}> {ref}")
    assert not broken, "broken local links in the built book:\n" + "\n".join(broken[:50])
    assert n_images > 0, "the built book shows no image at all"


@pytest.mark.skipif(not (HTML_DIR / "index.html").exists(),
                    reason="the book is not built (run `nox -s book` first)")
def test_built_book_shows_parts_provenance_and_ledger():
    index = (HTML_DIR / "index.html").read_text(encoding="utf-8")
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', index, re.I)
    if redirect:  # jupyter-book writes index.html as a redirect to the root page
        index = (HTML_DIR / redirect.group(1)).read_text(encoding="utf-8")
    for caption in ("Part I", "Part II", "Part III"):
        assert caption in index, f"index.html does not show {caption}"
    ledger_page = HTML_DIR / "notebooks" / "ledger.html"
    assert ledger_page.exists()
    text = ledger_page.read_text(encoding="utf-8")
    assert "hmat-ledger" in text and "Provenance of this page" in text
    timings_file = BOOK / "_build" / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    executed = {t["name"] for t in timings.get("notebooks", []) if t["status"] in ("ok", "reused")}
    for nb in NOTEBOOKS:
        if nb.stem not in executed:
            continue  # not executed in the last build (nox -s book -- --only ...)
        page = HTML_DIR / "notebooks" / f"{nb.stem}.html"
        assert page.exists(), f"{nb.stem} has no page in the built book"
        assert "Provenance of this page" in page.read_text(encoding="utf-8"), \
            f"{page.name} does not show its provenance"
