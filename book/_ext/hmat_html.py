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


def _unnumber_source_figures(app, doctree):
    """A figure whose caption starts with a source's label ("Thesis Fig. 2, rebuilt.") gets no
    book number: sphinx numbers only figures with ids, so its ids are dropped (nothing links to
    them). A reader holding the thesis finds "Thesis Fig. 2", not "Figure 11"."""
    from docutils import nodes

    for fig in doctree.findall(nodes.figure):
        caption = next(iter(fig.findall(nodes.caption)), None)
        if caption is not None and caption.astext().lstrip().startswith(SOURCE_LABELS):
            for i in fig["ids"]:
                doctree.ids.pop(i, None)
            fig["ids"] = []
            fig["names"] = []


def setup(app):
    app.connect("doctree-read", _unnumber_source_figures)
    # late: other extensions add their scripts to the page in this same event
    app.connect("html-page-context", _dedupe_scripts, priority=990)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
