"""The house style: numbers for reading, the table helper, method styles, the summary box."""

import math

import numpy as np
import pandas as pd
import pytest

from hmatbook import ledger, style


@pytest.mark.parametrize("x, digits, want", [
    (10.93651, 3, "10.9"), (219.9025, 3, "220"), (0.012345, 3, "0.0123"), (1234.5, 3, "1,234"),
    (0.0, 3, "0"), (float("nan"), 3, "-"), (None, 3, "-"), (12, 3, "12"), (1234567, 3, "1,234,567"),
    (2.5e-5, 3, "2.5e-05"), (3.14159, 2, "3.1"), (True, 3, "yes"), (np.int64(5), 3, "5"),
    (np.float32(0.5), 3, "0.5"), (0.300001, 3, "0.3"), (5.0, 3, "5"), (-43.891, 4, "-43.89"),
    (float("inf"), 3, "inf"),
])
def test_fmt_number(x, digits, want):
    assert style.fmt_number(x, digits) == want


def test_table_drops_index_formats_and_footnotes_missing():
    df = pd.DataFrame({"model": ["a", "b"], "rank": [30, 50], "time": [10.93651, math.nan]})
    t = style.table(df.set_index(["model", "rank"]), units={"time": "ms"},
                    not_run="weights unavailable (offline)")
    (f,) = t.frames
    assert list(f.columns) == ["model", "rank", "time [ms]"]  # the named index became columns
    assert f["time [ms]"].tolist() == ["10.9", "-"]
    assert "- not run: weights unavailable (offline)" in t.html
    assert "<th></th>" not in t.html  # no unnamed index column
    assert "<td class='text'>a</td>" in t.html and "<td class='num'>10.9</td>" in t.html
    # a default 0..n index is dropped, no footnote when nothing is missing
    t2 = style.table(pd.DataFrame({"x": [1.0, 2.0]}), not_run="never shown")
    assert t2.frames[0].columns.tolist() == ["x"] and "not run" not in t2.html


def test_wide_table_split_or_transposed():
    wide = pd.DataFrame({f"c{i}": np.arange(20) * 1.5 + i for i in range(10)})
    wide.insert(0, "key", [f"k{i}" for i in range(20)])
    t = style.table(wide, max_columns=5)
    assert len(t.frames) == 3
    assert all(f.columns[0] == "key" and f.shape[1] <= 5 for f in t.frames)
    assert sorted(c for f in t.frames for c in f.columns if c != "key") == sorted(
        f"c{i}" for i in range(10))
    few = wide.head(3)
    (f,) = style.table(few, max_columns=5).frames  # few rows: transposed
    assert f.columns.tolist() == ["key", "k0", "k1", "k2"] and f.shape[0] == 10


def test_table_rejects_bad_input():
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        style.table([[1, 2]])
    with pytest.raises(ValueError, match="lacks"):
        style.table(pd.DataFrame({"x": [1]}), units={"y": "ms"})


def test_method_style_fixed_and_distinct():
    a, b = style.method_style("svd"), style.method_style("svd")
    assert a == b and a["label"] == "SVD"
    part1 = [style.method_style(m)["color"] for m in ("svd", "rrqr", "aca", "aca_plain", "dense")]
    part2 = [style.method_style(m)["color"] for m in ("hmatrix", "hmatrix_rank", "global_svd",
                                                       "prune", "quant")]
    assert len(set(part1)) == 5 and len(set(part2)) == 5
    assert style.method_style("something new") == style.method_style("something new")
    assert style.method_style("svd", label="x")["label"] == "x"


def test_use_sets_the_style():
    import matplotlib as mpl
    import matplotlib.colors as mcolors

    saved = {k: mcolors._colors_full_map[k] for k in style.TAB_TO_SAFE}
    with mpl.rc_context():
        try:
            _check_use(mpl, mcolors)
        finally:  # other tests of this process see matplotlib's own colours again
            for k, v in saved.items():
                mcolors._colors_full_map[k] = v
            mcolors._colors_full_map.cache.clear()


def _check_use(mpl, mcolors):
    style.use()
    assert mpl.rcParams["font.size"] == 11
    assert mcolors.to_hex("tab:green") == style.GREEN.lower()  # the notebooks' names, safe hues
    assert mcolors.to_hex("tab:red") == style.VERMILLION.lower()
    w, h = style.figsize(2)
    assert w == pytest.approx(style.CONTENT_WIDTH_IN) and h > 0
    w3, _ = style.figsize(3)
    w6, _ = style.figsize(6)
    assert style.CONTENT_WIDTH_IN < w3 < w6 == pytest.approx(1.25 * style.CONTENT_WIDTH_IN, 0.01)
    with pytest.raises(ValueError, match="ncols"):
        style.figsize(0)


def test_summary_box_from_this_runs_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.RESULTS_ENV, str(tmp_path))
    c = ledger.load_claims()[0]
    cid, page = c["id"], c.get("notebook", "some_page")
    ledger.record(cid, "not reproduced", "measured 1.0", page)
    box = style.summary_box(page, "quick", setup="model m, data d")
    text = box.data
    assert "indicative sizes" in text and "model m, data d" in text
    assert cid in text
    assert f"1 claim decided here: 1 not reproduced ({cid}: not reproduced)." in text
    # a page that decided nothing in this run says so (never a stale or invented verdict)
    text = style.summary_box("other_page", "quick", setup="s").data
    assert "none was decided in this run" in text and "0 claims decided here" in text
    with pytest.raises(ValueError, match="profile"):
        style.summary_box(page, "huge", setup="s")
    box = style.summary_box("other_page", "full", setup="s", claim="c", result="r <b>")
    assert "the papers&#x27; scale" in box.data and "r &lt;b&gt;" in box.data


def test_summary_box_links_the_pages_downloads(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hmatbook import figures

    monkeypatch.setenv(figures.FIGURES_ENV, str(tmp_path / "fig"))
    monkeypatch.setattr(figures, "SAVED", [])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    figures.save(fig, "page_x_fig")
    plt.close(fig)
    assert (tmp_path / "fig" / "page_x_fig.pdf").exists() and figures.saved() == ["page_x_fig"]
    box = style.summary_box("page_x", "quick", setup="s", claim="c", result="r").data
    assert f"{style.DOWNLOADS_URL}/figures/page_x_fig.pdf" in box
    assert f"{style.DOWNLOADS_URL}/notebooks/page_x.ipynb" in box


def test_table_takes_series_styler_and_multiindex_columns():
    df = pd.DataFrame({"tol": [0.1, 0.2], "a": [1.0, 2.0], "b": [3.0, 4.0]})
    wide = df.pivot_table(index="tol", values=["a", "b"], aggfunc="first")
    wide.columns = pd.MultiIndex.from_tuples([("error", "a"), ("error", "b")])
    (f,) = style.table(wide).frames
    assert f.columns.tolist() == ["tol", "error a", "error b"]
    (f,) = style.table(df.style.format({"a": "{:.1f}"})).frames
    assert f.columns.tolist() == ["tol", "a", "b"]
    (f,) = style.table(df["a"]).frames
    assert f.columns.tolist() == ["a"]


def test_show_tables_the_book_way_and_passes_the_rest(capsys):
    style.show(pd.DataFrame({"x": [1.23456]}))
    style.show("plain text")
    out = capsys.readouterr().out
    assert "1.23" in out and "1.23456" not in out and "plain text" in out


def test_use_leaves_the_layout_engine_to_the_page():
    """A page that adds a colorbar and calls tight_layout must not fail (Kovasznay page did
    under a constrained-layout default)."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    with mpl.rc_context(style.rc_params()):
        fig, axes = plt.subplots(1, 2, figsize=style.figsize(2))
        im = axes[0].imshow(np.eye(3))
        fig.colorbar(im, ax=axes[0])
        axes[1].plot([0, 1], [0, 1], label="x")
        fig.tight_layout()
        style.legend_outside(fig)
        plt.close(fig)


def test_wrap_and_say_fit_the_code_column(capsys):
    long = "not run: weights unavailable; tried: " + "/a/very/long/path/" * 12 + " (missing)"
    text = style.wrap("head:", long, "\nshort line\n" + "x " * 60)
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= style.CODE_COLUMN_CHARS
    assert "short line" in lines  # short lines are left as they are
    # only whitespace changes (a word longer than a line is cut): the same characters, in order
    want = "head: " + long + "\nshort line\n" + "x " * 60
    assert "".join(text.split()) == "".join(want.split())
    style.say("a", 1, "b", sep="-")
    assert capsys.readouterr().out == "a-1-b\n"
    with pytest.raises(ValueError, match="width must be >= 20"):
        style.wrap("x", width=5)


def test_legend_outside_stays_off_the_data_and_the_labels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style.use()
    fig, axes = plt.subplots(1, 2, figsize=style.figsize(2))
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a")
        ax.plot([0, 1], [1, 0], label="b")
        ax.set_xlabel("x [unit]")
    fig.tight_layout()
    r = fig.canvas.get_renderer()
    below = axes[0].get_tightbbox(r).y0  # lowest tick or axis label of the left panel
    leg = style.legend_outside(axes[0])
    assert leg.get_window_extent(r).y1 <= below  # under the axis label, not on the plot
    fleg = style.legend_outside(fig)
    assert [t.get_text() for t in fleg.get_texts()] == ["a", "b"]  # each label once
    assert fleg.get_window_extent(r).y1 <= fig.bbox.y0 + 1  # below the panels
    plt.close(fig)


def test_numbers_with_intervals_are_right_aligned_numbers():
    t = style.table(pd.DataFrame({"model": ["a"], "saving [%]": ["0.5 [-5.3, 3.0]"],
                                  "note": ["see [1, x]"]}))
    assert "<td class='num'>0.5 [-5.3, 3.0]</td>" in t.html
    assert "<td class='text'>see [1, x]</td>" in t.html


def _label_boxes(ax, which):
    """Window extents of the visible, non-empty tick labels of ``ax``'s ``which`` axis."""
    a = getattr(ax, f"{which}axis")
    ticks = a.get_major_ticks() + a.get_minor_ticks()
    lo, hi = sorted(a.get_view_interval())
    boxes = []
    for t in ticks:
        lab = t.label1
        if lab.get_visible() and lab.get_text() and lo * 0.999 <= t.get_loc() <= hi * 1.001:
            boxes.append(lab.get_window_extent())
    return boxes


def _overlaps(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


# data ranges of the book's log axes: the primer's tolerances, Part II's memory percentages,
# NTK eigenvalues over 24 decades, a test accuracy near 100 %
LOG_RANGES = [(0.1, 0.5), (22.0, 51.0), (5.0, 60.0), (1e-16, 1e8), (3e-3, 2.0), (90.0, 99.0)]


@pytest.mark.parametrize("lo, hi", LOG_RANGES)
def test_log_axis_labels_do_not_overlap(lo, hi):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(style.rc_params()):
        # the narrowest panel the book draws: three in a row
        fig, axes = plt.subplots(1, 3, figsize=style.figsize(3, aspect=0.8))
        ax = axes[1]
        x = np.geomspace(lo, hi, 7)
        ax.plot(x, x, "o-")
        style.log_axis(ax, "both")
        fig.tight_layout()
        fig.canvas.draw()
        for which in "xy":
            boxes = _label_boxes(ax, which)
            assert len(boxes) >= 2, (which, lo, hi, len(boxes))
            assert not _overlaps(boxes), (which, lo, hi)
            texts = [t.get_text() for t in getattr(ax, f"get_{which}ticklabels")()
                     if t.get_text()]
            assert not any("times" in t for t in texts), texts  # plain numbers, no 3x10^-1
        plt.close(fig)


def test_overlap_check_sees_matplotlibs_default_collision():
    """The check above can fail: matplotlib's own log axis over 0.1-0.5 (the primer's
    tolerances) labels its minor ticks, and in a narrow panel they collide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(style.rc_params()):
        fig, axes = plt.subplots(1, 3, figsize=style.figsize(3, aspect=0.8))
        axes[1].semilogx([0.1, 0.3, 0.47], [1, 2, 3], "o-")
        fig.tight_layout()
        fig.canvas.draw()
        assert _overlaps(_label_boxes(axes[1], "x"))
        plt.close(fig)


def test_log_ticks_and_labels():
    assert style.log_ticks(0.1, 0.5) == pytest.approx([0.1, 0.2, 0.3, 0.5])
    assert style.log_ticks(1e-16, 1e8, max_ticks=5) == pytest.approx(
        [1e-15, 1e-10, 1e-5, 1.0, 1e5])
    assert len(style.log_ticks(5.0, 60.0)) <= 5
    assert style.log_ticks(-1.0, 3.0) == []
    assert len(style.log_ticks(90.0, 99.0)) >= 2  # within one decade's multiples: linear
    assert style._log_label(0.2, False) == "0.2" and style._log_label(30.0, True) == "30 %"
    assert style._log_label(1e-8, False) == "$10^{-8}$"
    with pytest.raises(ValueError, match="axis must be"):
        style.log_axis(None, "z")
