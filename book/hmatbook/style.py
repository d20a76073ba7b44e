"""The book's house style: one matplotlib style, one colour and marker per method, one table
helper and the summary box at the top of every page.

Every page calls :func:`use` once, plots each method with ``**method_style(name)``, shows
tables with :func:`table` and ends with :func:`summary_box` (glued into the page's title cell),
so that a new page looks like the others by calling these four helpers.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Mapping, Sequence

# Width of the book's content column at a 1280 px window (sphinx-book-theme, measured in the
# browser test): figures are made this wide so that they display at about their natural size
# and their fonts stay legible.
CONTENT_WIDTH_PX = 760
DPI = 100
CONTENT_WIDTH_IN = CONTENT_WIDTH_PX / DPI
# Characters of a code cell's line (source or printed output) that fit the content column at a
# 1280 px window in the book's code font (book/_static/hmat.css; 85 measured in the browser
# test, which checks this number): longer lines scroll sideways, so pages wrap at this width.
CODE_COLUMN_CHARS = 84

# Okabe & Ito's colour-blind-safe palette (plus two of Paul Tol's for the last methods).
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
WINE, TEAL, INDIGO, GREY = "#882255", "#44AA99", "#332288", "#777777"

# name -> (label, colour, marker, linestyle); one entry per method, the same on every page. The
# colours follow the book's conventions (the thesis' Fig. 2-4: SVD green dotted, QR orange
# dashed, ACA blue dash-dotted, dense red), in the colour-blind-safe hues.
METHODS: dict[str, tuple[str, str, str, str]] = {
    # Part I: the low-rank method of every admissible block
    "svd": ("SVD", GREEN, "s", ":"),
    "rrqr": ("QR (rank-revealing)", ORANGE, "^", "--"),
    "aca": ("ACA", BLUE, "o", "-."),
    "aca_plain": ("ACA, plain cross", PURPLE, "v", (0, (5, 1, 1, 1, 1, 1))),
    # Part II: compression methods of a network at matched memory
    "hmatrix": ("H-matrix (adaptive)", BLUE, "o", "-"),
    "hmatrix_rank": ("H-matrix (fixed rank)", ORANGE, "P", "--"),
    "global_svd": ("SVD (global)", GREEN, "s", ":"),
    "prune": ("pruning", VERMILLION, "^", "-."),
    "quant": ("int8 quantization", PURPLE, "D", ":"),
    # Part III: implementations of the product
    "hmat": ("hmat (H-matrix)", BLUE, "o", "-"),
    "numpy": ("numpy (dense BLAS)", GREY, "x", "-"),
    "torch": ("torch (dense)", ORANGE, "h", "--"),
    "torch_int8": ("torch int8 (dense)", PURPLE, "D", ":"),
    # references
    "dense": ("dense", VERMILLION, "x", "-"),
    "thesis": ("thesis (reference)", GREY, "s", "none"),
}
# matplotlib's "tab:" colour names, as the notebooks write them, mapped to the colour-blind-safe
# colour of the same hue (see :func:`use`): a caption's "dashed orange" stays true.
TAB_TO_SAFE = {"tab:blue": BLUE, "tab:orange": ORANGE, "tab:green": GREEN, "tab:red": VERMILLION,
               "tab:purple": PURPLE, "tab:cyan": SKY, "tab:olive": YELLOW, "tab:gray": GREY,
               "tab:grey": GREY}
_EXTRA = (YELLOW, INDIGO, WINE, TEAL, SKY, PURPLE, ORANGE, GREEN)
_EXTRA_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")

# the verdicts' colours (hmatbook.ledger.VERDICTS; unknown ones get grey)
VERDICT_COLOURS = {"reproduced": GREEN, "not reproduced": VERMILLION,
                   "inconclusive": ORANGE, "not testable here": GREY,
                   "partly reproduced": SKY, "not yet tested": "#BBBBBB"}

# where ``nox -s book`` puts each page's executed notebook and figures (relative to a page in
# notebooks/): book/_executed/_static/{notebooks,figures}, copied by sphinx into the HTML.
DOWNLOADS_URL = "../_static/downloads"

PROFILE_TEXT = {"quick": "quick: indicative sizes (CI scale), not the papers' scale",
                "full": "full: the papers' scale"}


def rc_params() -> dict:
    """The matplotlib settings of the book (see :func:`use`)."""
    from cycler import cycler

    cyc = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, GREY, YELLOW]
    return {
        "figure.figsize": (CONTENT_WIDTH_IN, CONTENT_WIDTH_IN * 0.5),
        "figure.dpi": DPI,
        "savefig.dpi": 2 * DPI,
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 9.5,
        "legend.framealpha": 0.9,
        "legend.frameon": True,
        "lines.linewidth": 1.8,
        "lines.markersize": 6,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=cyc),
        "image.cmap": "viridis",
    }


def use() -> None:
    """Apply the book's matplotlib style (call once per page, before the first figure): sizes
    and fonts for the content column, the colour-blind-safe palette (also for "tab:" names)."""
    import matplotlib as mpl
    import matplotlib.colors as mcolors

    mpl.rcParams.update(rc_params())
    # the "tab:" names that the notebooks use resolve to the safe palette (matplotlib keeps its
    # named colours in one mapping, read by every colour lookup)
    for name, colour in TAB_TO_SAFE.items():
        mcolors._colors_full_map[name] = colour
    mcolors._colors_full_map.cache.clear()
    try:  # the inline backend of a notebook: PNG, cropped to the drawn area
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            ip.run_line_magic("config", "InlineBackend.print_figure_kwargs = "
                                        "{'bbox_inches': 'tight'}")
            ip.run_line_magic("config", "InlineBackend.rc = {}")
    except ImportError:
        pass


def figsize(ncols: int = 1, nrows: int = 1, aspect: float = 0.5) -> tuple[float, float]:
    """Figure size (inches) for ``ncols`` x ``nrows`` panels over the content width; each panel's
    height is ``aspect`` times its width (at least 1.8 in).

    Three or more panels in a row get a figure up to 25 % wider than the column; more than four
    are too small to read: use two rows.
    """
    if ncols < 1 or nrows < 1:
        raise ValueError(f"ncols and nrows must be >= 1, got ncols={ncols}, nrows={nrows}")
    if aspect <= 0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    # three or four panels in a row: up to 25 % wider than the column (shown at 80 % or more of
    # their size), so that each panel keeps room for its tick labels
    width = CONTENT_WIDTH_IN * min(1 + 0.125 * max(ncols - 2, 0), 1.25)
    return (round(width, 2), round(nrows * max(width / ncols * aspect, 1.8), 2))


def method_style(name: str, **override) -> dict:
    """Plot keywords (label, color, marker, linestyle) of a method, the same on every page.

    Unknown names get a fixed colour and marker derived from the name (stable across runs).
    """
    if name in METHODS:
        label, color, marker, ls = METHODS[name]
    else:
        h = zlib.crc32(name.encode())
        label, color = name, _EXTRA[h % len(_EXTRA)]
        marker, ls = _EXTRA_MARKERS[(h // 8) % len(_EXTRA_MARKERS)], "-"
    return {"label": label, "color": color, "marker": marker, "linestyle": ls, **override}


def legend_outside(ax_or_fig, **kw):
    """A legend below the axes (or the figure), never on the data.

    A figure gets one legend of its axes' entries (each label once) below all panels; an axes
    gets its own legend below its tick and axis labels: call it after ``fig.tight_layout()``,
    which would otherwise move the axes from under it.
    """
    import matplotlib.figure

    if isinstance(ax_or_fig, matplotlib.figure.Figure):
        handles, labels = [], []
        for ax in ax_or_fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels and not lab.startswith("_"):
                    handles.append(h)
                    labels.append(lab)
        ncol = kw.pop("ncol", min(len(labels), 4) or 1)
        # below the figure; the saved and displayed image is cropped to include it
        # (bbox_inches="tight"); no layout engine is set, as pages call tight_layout themselves
        return ax_or_fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                                ncol=ncol, **kw)
    ax = ax_or_fig
    n = len(ax.get_legend_handles_labels()[1])
    # the axes with its tick labels and axis label, in display units: the legend goes below
    renderer = ax.figure.canvas.get_renderer()
    below, box = ax.get_tightbbox(renderer), ax.get_window_extent(renderer)
    y = (below.y0 - box.y0) / box.height - 0.03 if box.height > 0 else -0.18
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, y),
                     ncol=kw.pop("ncol", min(n, 3) or 1), **kw)


def log_ticks(vmin: float, vmax: float, max_ticks: int = 5) -> list[float]:
    """Labelled ticks of a log axis from ``vmin`` to ``vmax``: at most ``max_ticks`` of them,
    at 1, 2, 3, 5 x 10^k where they fit, else 1, 2, 5 / 1, 3 / 1 x 10^k, else every n-th decade
    (matplotlib's default labels every minor tick of a short range, and the labels collide)."""
    if not (0 < vmin < vmax) or not math.isfinite(vmax):
        return []
    lo, hi = math.floor(math.log10(vmin)), math.ceil(math.log10(vmax))
    eps = 1e-9 * (vmax - vmin)
    for subs in ((1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        ticks = [s * 10.0**k for k in range(lo, hi + 1) for s in subs
                 if vmin - eps <= s * 10.0**k <= vmax + eps]
        if len(ticks) <= max_ticks:
            if len(ticks) >= 2:
                return ticks
            break  # too short a range for these: try every integer multiple of its decade
    ticks = [s * 10.0**k for k in range(lo, hi + 1) for s in range(1, 10)
             if vmin - eps <= s * 10.0**k <= vmax + eps]
    if 2 <= len(ticks) <= max_ticks:
        return ticks
    if len(ticks) > max_ticks:  # many decades: every n-th one
        stride = math.ceil((hi - lo + 1) / max_ticks)
        return [10.0**k for k in range(lo, hi + 1) if k % stride == 0]
    # a short range (less than between two multiples of its decade): evenly spaced ticks
    import matplotlib.ticker as mticker

    return [v for v in mticker.MaxNLocator(max_ticks, steps=[1, 2, 2.5, 5, 10])
            .tick_values(vmin, vmax) if vmin - eps <= v <= vmax + eps]


def _log_label(v: float, percent: bool) -> str:
    """A tick label: a plain number (0.2, 30, 1,000) or 10^k for powers of ten far from 1."""
    k = math.log10(v)
    if (v >= 1e4 or v < 1e-3) and abs(k - round(k)) < 1e-9:
        text = f"$10^{{{round(k)}}}$"
    else:
        text = fmt_number(v, 2)
    return f"{text} %" if percent else text


def log_axis(ax, axis: str = "x", *, percent: bool = False, max_ticks: int | None = None):
    """Make ``axis`` ("x", "y" or "both") of ``ax`` a log axis whose labels never collide: a
    few labelled ticks (:func:`log_ticks`) as plain numbers (``percent``: "30 %"), unlabelled
    minor ticks. Call it after plotting (a later ``set_xscale("log")`` would undo it)."""
    import matplotlib.ticker as mticker

    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")

    class _Locator(mticker.Locator):
        def __init__(self, n):
            self.n = n

        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, vmin, vmax):
            return log_ticks(*sorted((vmin, vmax)), max_ticks=self.n)

    for name in (("x", "y") if axis == "both" else (axis,)):
        getattr(ax, f"set_{name}scale")("log")
        a = getattr(ax, f"{name}axis")
        # y labels stack vertically and are short: a few more fit than side by side on x
        a.set_major_locator(_Locator(max_ticks or (5 if name == "x" else 6)))
        a.set_major_formatter(mticker.FuncFormatter(lambda v, _pos: _log_label(v, percent)))
        a.set_minor_locator(mticker.LogLocator(subs="auto", numticks=30))
        a.set_minor_formatter(mticker.NullFormatter())
    return ax


def wrap(*parts, sep: str = " ", width: int = CODE_COLUMN_CHARS) -> str:
    """The text ``sep.join(parts)`` wrapped at ``width`` characters (each line of it on its own;
    continuation lines indented by two spaces): printed output that fits the content column."""
    import textwrap

    if width < 20:
        raise ValueError(f"width must be >= 20 characters, got {width}")
    text = sep.join(str(p) for p in parts)
    return "\n".join(
        textwrap.fill(line, width=width, subsequent_indent="  ", break_on_hyphens=False)
        if len(line) > width else line
        for line in text.split("\n"))


def say(*parts, sep: str = " ", width: int = CODE_COLUMN_CHARS) -> None:
    """``print`` for the book: the same text, wrapped at the content column (see :func:`wrap`),
    so that no printed line scrolls sideways."""
    print(wrap(*parts, sep=sep, width=width))


# ----------------------------------------------------------------------------- numbers, tables
def fmt_number(x, digits: int = 3) -> str:
    """A number for reading: at most ``digits`` significant digits (no trailing zeros),
    thousands separated, no exponent between 1e-3 and 1e6; ``-`` for a missing value."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "iu"):
        return f"{int(x):,}"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        mant, exp = f"{v:.{max(digits - 1, 0)}e}".split("e")
        return f"{_trim(mant)}e{exp}"
    if a >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(a))
    return _trim(f"{v:,.{decimals}f}")


def _trim(text: str) -> str:
    """0.300 -> 0.3, 5.00 -> 5 (the digits are significant digits at most)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


class Table:
    """An HTML table for the book (see :func:`table`); displays in a notebook and in the book."""

    def __init__(self, html_text: str, frames: list):
        self.html = html_text
        self.frames = frames  # the formatted DataFrames shown (strings), for tests and reuse

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return "\n\n".join(f.to_string(index=False) for f in self.frames)


def table(df, *, units: Mapping[str, str] | None = None, digits: int | Mapping[str, int] = 3,
          not_run: str | None = None, caption: str | None = None, notes: Sequence[str] = (),
          keep: Sequence[str] | None = None, max_columns: int = 6, transpose: bool | None = None,
          rename: Mapping[str, str] | None = None) -> Table:
    """A DataFrame as the book shows tables.

    * no index column: a named index becomes ordinary columns, a default 0..n index is dropped;
    * numbers with ``digits`` significant digits (per column if a mapping), units in the header
      (``units={"time": "ms"}`` -> ``time [ms]``);
    * a missing value (NaN/None) reads ``-``, with a footnote ``- not run: <not_run>`` when
      ``not_run`` is given (say why);
    * more than ``max_columns`` columns: transposed when there are few rows (or when
      ``transpose=True``), else split into several tables that each repeat the ``keep``
      columns (default: the first column).
    """
    import pandas as pd

    if isinstance(getattr(df, "data", None), pd.DataFrame) and hasattr(df, "format"):
        df = df.data  # a pandas Styler: its data, formatted here
    if isinstance(df, pd.Series):
        df = df.to_frame()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame (or Series, Styler), got "
                        f"{type(df).__name__}")
    if max_columns < 2:
        raise ValueError(f"max_columns must be >= 2, got {max_columns}")
    d = df.copy()
    if any(n is not None for n in d.index.names):
        d = d.reset_index()
    else:
        d = d.reset_index(drop=True)
    d.columns = [" ".join(str(x) for x in c if str(x)) if isinstance(c, tuple) else str(c)
                 for c in d.columns]
    missing = [c for c in (units or {}) if c not in d.columns]
    missing += [c for c in (keep or ()) if c not in d.columns]
    if isinstance(digits, Mapping):
        missing += [c for c in digits if c not in d.columns]
    if missing:
        raise ValueError(f"units/keep/digits name columns that the table lacks: {missing}; "
                         f"columns: {list(d.columns)}")
    has_missing = bool(d.isna().to_numpy().any())
    out = pd.DataFrame(index=d.index)
    for c in d.columns:
        n = digits.get(c, 3) if isinstance(digits, Mapping) else digits
        out[c] = [fmt_number(v, n) if _is_number(v) else ("-" if _is_missing(v) else str(v))
                  for v in d[c]]
    # snake_case names read as words and may wrap between them
    header = {c: (f"{c} [{units[c]}]" if units and c in units else c).replace("_", " ")
              for c in out.columns}
    if rename:
        header = {c: rename.get(c, h) for c, h in header.items()}
    out = out.rename(columns=header)

    frames: list[pd.DataFrame]
    n_rows, n_cols = out.shape
    if transpose is None:
        transpose = n_cols > max_columns and n_rows + 1 <= max_columns
    if transpose:
        first = out.columns[0]
        t = out.set_index(first).T
        t.index.name = first
        frames = [t.reset_index()]
    elif n_cols > max_columns:
        kept = [header[c] for c in (keep or [d.columns[0]])]
        rest = [c for c in out.columns if c not in kept]
        step = max(max_columns - len(kept), 1)
        frames = [out[kept + rest[i:i + step]] for i in range(0, len(rest), step)]
    else:
        frames = [out]

    parts = []
    for k, f in enumerate(frames):
        cap = ""
        if caption:
            cap = caption if len(frames) == 1 else f"{caption} ({k + 1} of {len(frames)})"
            cap = f"<caption>{html.escape(cap)}</caption>"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in f.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td class='{'num' if _numeric_text(v) else 'text'}'>"
                             f"{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in f.itertuples(index=False))
        parts.append(f"<table class='hmat-table'>{cap}<thead><tr>{head}</tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    foot = list(notes)
    if has_missing and not_run:
        foot.insert(0, f"- not run: {not_run}")
    foot_html = "".join(f"<p class='hmat-table-note'>{html.escape(x)}</p>" for x in foot)
    return Table(f"<div class='hmat-table-wrap'>{''.join(parts)}{foot_html}</div>", frames)


def show(obj, **kw) -> None:
    """Display ``obj`` the book's way: a DataFrame, Series or Styler through :func:`table`
    (keywords as there), anything else as IPython would."""
    import pandas as pd
    from IPython.display import display

    is_table = isinstance(obj, (pd.DataFrame, pd.Series)) or (
        isinstance(getattr(obj, "data", None), pd.DataFrame) and hasattr(obj, "format"))
    display(table(obj, **kw) if is_table else obj)


def _numeric_text(text) -> bool:
    """A formatted number, a missing value ("-"), a range ("1.2 to 3.4") or a number with its
    interval ("0.5 [-5.3, 3.0]"): right-aligned, never wrapped."""
    text = str(text)
    if text.endswith("]") and " [" in text:  # "estimate [low, high]"
        est, iv = text[:-1].split(" [", 1)
        return all(_numeric_text(x.strip()) for x in [est, *iv.split(", ")]) and iv.count(", ") == 1
    parts = text.replace(",", "").split(" to ")
    if len(parts) > 2:
        return False
    for p in parts:
        if p != "-":
            try:
                float(p)
            except ValueError:
                return False
    return True


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, pd.NA raise or return NA
    except (TypeError, ValueError):
        return False


def _is_number(v) -> bool:
    import numbers

    import numpy as np

    return isinstance(v, (numbers.Number, np.number)) and not _is_missing(v)


# ----------------------------------------------------------------------------- summary box
def summary_box(page: str, profile: str, *, setup: str, result: str | None = None,
                claim: str | None = None, glue_key: str = "page_summary", show: bool = False):
    """The box at the top of a page: the claim, the setup (profile first) and the result in one
    sentence, all computed in this run; glued as ``glue_key`` for the page's title cell.

    ``claim`` defaults to the claims (``data/claims.yml``) whose verdicts this page recorded in
    this run, ``result`` to those verdicts; a page that tests no claim passes both. A last row
    links the executed notebook and the PDF of every figure this page saved
    (:func:`hmatbook.figures.save`). Call it in the page's last code cell.
    """
    from . import figures, ledger

    if profile not in PROFILE_TEXT:
        raise ValueError(f"profile must be one of {sorted(PROFILE_TEXT)}, got {profile!r}")
    mine = [r for r in ledger.table() if page in str(r.get("where", "")).replace(",", " ").split()]
    if claim is None:
        claim = "; ".join(f"{r['claim'].strip()} ({r['id']})" for r in mine[:3])
        if len(mine) > 3:
            claim += f"; and {len(mine) - 3} more (see the claims ledger)"
        if not mine:
            claim = "the claims of the ledger that this page tests: none was decided in this run"
    if result is None:
        counts: dict[str, int] = {}
        for r in mine:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        result = (f"{len(mine)} claim{'s' if len(mine) != 1 else ''} decided here: "
                  + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".")
        if mine and len(mine) <= 4:
            result = result[:-1] + " (" + "; ".join(f"{r['id']}: {r['verdict']}"
                                                   for r in mine) + ")."
    prof = PROFILE_TEXT[profile]
    rows = [("Claim", claim), ("Setup", f"<b>profile {html.escape(prof)}</b>; "
                                        f"{html.escape(setup)}"),
            ("Result", result)]
    cells = "".join(
        f"<tr><th>{k}</th><td>{v if k == 'Setup' else html.escape(v)}</td></tr>"
        for k, v in rows)
    links = [f"<a href='{DOWNLOADS_URL}/notebooks/{html.escape(page)}.ipynb' download>"
             "executed notebook (.ipynb)</a>"]
    links += [f"<a href='{DOWNLOADS_URL}/figures/{html.escape(n)}.pdf' download>"
              f"{html.escape(n)}.pdf</a>" for n in figures.saved()]
    cells += f"<tr><th>Downloads</th><td>{' &middot; '.join(links)}</td></tr>"
    box = f"<div class='hmat-summary'><table>{cells}</table></div>"
    from IPython.display import HTML

    obj = HTML(box)
    try:
        from myst_nb import glue

        glue(glue_key, obj, display=show)
    except ImportError:
        pass
    return obj
