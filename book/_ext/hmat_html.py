"""A small sphinx extension of the book: each inline script once per page, and the thesis'
figures carry the thesis' labels instead of book numbers.

sphinx-thebe 0.3 adds its inline configuration script (``const THEBE_JS_URL = ...``) once per
read phase; with jupyter-book 1.x on Sphinx 7 a page got it twice, and the browser reported
"Identifier 'THEBE_JS_URL' has already been declared" on every page
(tests/project/test_browser.py).
"""


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        # an inline script's filename is None or "" (the same script added twice): its body counts
        key = (getattr(js, "filename", str(js)) or "",
               repr(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    context["script_files"] = kept


SOURCE_LABELS = ("Thesis Fig.", "Thesis Table")


def _mark_source_figures(app, doctree):
    """Note the figures whose caption starts with a source's label ("Thesis Fig. 2, rebuilt.")."""
    from docutils import nodes

    marked = []
    for fig in doctree.findall(nodes.figure):
        caption = next(iter(fig.findall(nodes.caption)), None)
        if fig["ids"] and caption is not None and \
                caption.astext().lstrip().startswith(SOURCE_LABELS):
            marked.append(fig["ids"][0])
    app.env.hmat_source_figures = {**getattr(app.env, "hmat_source_figures", {}),
                                   app.env.docname: marked}


def _unnumber_source_figures(app, env):
    """After sphinx numbered the figures: the source-labelled ones lose their book number and
    the others are numbered 1, 2, ... again in reading order. A reader holding the thesis finds
    "Thesis Fig. 2", not "Figure 11"."""
    marked = getattr(env, "hmat_source_figures", {})
    entries = []
    for docname, by_type in env.toc_fignumbers.items():
        numbers = by_type.get("figure", {})
        for fid in marked.get(docname, []):
            numbers.pop(fid, None)
        entries += [(num, docname, fid) for fid, num in numbers.items()]
    if any(len(num) != 1 for num, _, _ in entries):
        return []  # numbered per section: leave sphinx's numbers alone
    for k, (_, docname, fid) in enumerate(sorted(entries), 1):
        env.toc_fignumbers[docname]["figure"][fid] = (k,)
    return []


def setup(app):
    app.connect("doctree-read", _mark_source_figures)
    # after sphinx's own figure numbering (the toctree collector, default priority)
    app.connect("env-get-updated", _unnumber_source_figures, priority=900)
    # late: other extensions add their scripts to the page in this same event
    app.connect("html-page-context", _dedupe_scripts, priority=990)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
