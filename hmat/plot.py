"""Block-structure plot in the style of the thesis' Fig. 1: low-rank blocks green with their rank
written in, dense blocks red. Axes are matrix indices (in cluster order when rows or columns were
permuted)."""

from __future__ import annotations

__all__ = ["plot_blocks"]

LOWRANK_COLOR = "#3a9a3a"
DENSE_COLOR = "#d62728"


def plot_blocks(H, ax=None, *, ranks: bool = True, fontsize: float | None = None, title=None):
    """Draw the block partition of ``H``; returns the matplotlib Axes.

    Low-rank blocks are shaded green, darker the closer their storage is to the dense block's
    (``k (m + n) / (m n)``); the rank is written in every block large enough to hold it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle

    if ax is None:
        m, n = H.shape
        _, ax = plt.subplots(figsize=(6.0 * n / max(m, n) + 1.5, 6.0 * m / max(m, n) + 0.5))
    fig = ax.figure
    m, n = H.shape
    lr_rects, lr_fill, dense_rects = [], [], []
    for b in H.blocks():
        rect = Rectangle((b.col_start, b.row_start), b.col_stop - b.col_start,
                         b.row_stop - b.row_start)
        if b.kind == "lowrank":
            bm, bn = b.row_stop - b.row_start, b.col_stop - b.col_start
            lr_rects.append(rect)
            lr_fill.append(min(1.0, b.rank * (bm + bn) / (bm * bn)))
        else:
            dense_rects.append(rect)
    greens = plt.get_cmap("Greens")
    if lr_rects:
        colors = [greens(0.35 + 0.55 * f) for f in lr_fill]
        ax.add_collection(PatchCollection(lr_rects, facecolors=colors, edgecolors="k",
                                          linewidths=0.3))
    if dense_rects:
        ax.add_collection(PatchCollection(dense_rects, facecolors=DENSE_COLOR, edgecolors="k",
                                          linewidths=0.3))
    ax.set_xlim(0, n)
    ax.set_ylim(m, 0)
    ax.set_aspect("equal")
    permuted = getattr(H, "row_perm", None) is not None or getattr(H, "col_perm", None) is not None
    suffix = " (cluster order)" if permuted else ""
    # matrix convention: row 0 at the top, column indices along the top edge
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("column index" + suffix)
    ax.set_ylabel("row index" + suffix)
    if ranks and lr_rects:
        fig.canvas.draw_idle()
        # points per matrix index, to decide whether a label fits in a block
        bbox = ax.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
        pts_per_index = 72.0 * min(bbox.width / n, bbox.height / m)
        for b in H.blocks():
            if b.kind != "lowrank":
                continue
            bm, bn = b.row_stop - b.row_start, b.col_stop - b.col_start
            label = str(b.rank)
            size = fontsize or min(9.0, 0.45 * pts_per_index * min(bm, bn))
            width_pts = 0.62 * size * len(label)
            if size < 3.5 or width_pts > 0.9 * pts_per_index * bn:
                continue
            ax.text(b.col_start + bn / 2, b.row_start + bm / 2, label, ha="center",
                    va="center", fontsize=size, color="black")
    handles = [Patch(facecolor=greens(0.6), edgecolor="k", label="low-rank block (rank)"),
               Patch(facecolor=DENSE_COLOR, edgecolor="k", label="dense block")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2,
              frameon=False, fontsize=8)
    if title is not None:
        ax.set_title(title, pad=28)
    return ax
