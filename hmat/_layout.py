"""The packed layout of an :class:`hmat.HMatrix`: block form, row panels, gather runs, schedule.

*Block form* (the exchange and file format): ``lr_desc`` rows ``(r0, m, c0, n, k, off)`` with
``U`` (m x k) then ``Vt`` (k x n), row-major, at ``lr_data[off:]``; ``d_desc`` rows
``(r0, m, c0, n, off)`` with a dense block at ``d_data[off:]``. :func:`pack_blocks` is the one
place that writes it and :func:`block_form` the one that reads it back from the panels.
*Row panels* (what the products read): see :mod:`hmat._kernels`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Schedule", "Panels", "schedule", "to_panels", "chunk_cost", "pack_blocks",
           "descriptor_nbytes", "LR_COLS", "D_COLS"]

LR_COLS = 6  # (r0, m, c0, n, k, off)
D_COLS = 5  # (r0, m, c0, n, off)


def descriptor_nbytes(n_lowrank: int, n_dense: int) -> int:
    """Bytes of the tables whose size depends only on the block counts: the two descriptor
    tables and the Vt / t offsets (the segment, run and schedule tables come on top)."""
    return 8 * (LR_COLS * n_lowrank + D_COLS * n_dense + 2 * (n_lowrank + 1))


def pack_blocks(lowrank, dense, dtype):
    """Block form from ``lowrank = [(r0, c0, U, Vt), ...]`` and ``dense = [(r0, c0, D), ...]``
    (permuted indices); blocks are ordered by (row, column) so the memory walk goes forward."""
    lowrank = sorted(lowrank, key=lambda b: (b[0], b[1]))
    dense = sorted(dense, key=lambda b: (b[0], b[1]))
    lr_desc = np.zeros((len(lowrank), LR_COLS), dtype=np.int64)
    parts, off = [], 0
    for b, (r0, c0, u, vt) in enumerate(lowrank):
        bm, k = u.shape
        bn = vt.shape[1]
        if vt.shape[0] != k:
            raise ValueError(f"low-rank block {b}: U is {u.shape}, Vt is {vt.shape}")
        lr_desc[b] = (r0, bm, c0, bn, k, off)
        parts += [np.ravel(u), np.ravel(vt)]
        off += k * (bm + bn)
    lr_data = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    d_desc = np.zeros((len(dense), D_COLS), dtype=np.int64)
    parts, off = [], 0
    for b, (r0, c0, d) in enumerate(dense):
        bm, bn = d.shape
        d_desc[b] = (r0, bm, c0, bn, off)
        parts.append(np.ravel(d))
        off += bm * bn
    d_data = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return lr_desc, lr_data, d_desc, d_data


class Schedule(NamedTuple):
    """How one product is split into row tasks (see :mod:`hmat._kernels`)."""

    task_chunk: np.ndarray  # (n_tasks + 1,) first chunk of each task
    task_ptr: np.ndarray  # CSR pointers into task_lr
    task_lr: np.ndarray  # low-rank blocks lying wholly inside each task's rows
    shared: np.ndarray  # low-rank blocks that a task cut crosses (their Vt x is computed first)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self))


def schedule(chunks, chunk_cost, lr_desc, n_tasks: int) -> Schedule:
    """Group consecutive chunks into at most ``n_tasks`` tasks of about equal work.

    A cut goes where no low-rank block crosses it when one lies close to the ideal place (within
    15 % of a task's work); otherwise at the nearest chunk boundary, and the low-rank blocks that
    it crosses become ``shared``.
    """
    n_chunks = len(chunks) - 1
    cum = np.concatenate([[0.0], np.cumsum(chunk_cost)])
    total = cum[-1]
    starts, stops = lr_desc[:, 0], lr_desc[:, 0] + lr_desc[:, 1]
    # chunk boundaries that cut no low-rank block
    crossing = np.zeros(len(chunks), dtype=bool)
    for r0, r1 in zip(starts, stops, strict=True):
        crossing |= (chunks > r0) & (chunks < r1)
    free = np.flatnonzero(~crossing)
    cuts = [0]
    for t in range(1, max(1, min(n_tasks, n_chunks))):
        target = total * t / n_tasks
        best = free[np.argmin(np.abs(cum[free] - target))]
        if abs(cum[best] - target) > 0.15 * total / n_tasks:
            best = int(np.argmin(np.abs(cum - target)))
        if cuts[-1] < best < n_chunks:
            cuts.append(int(best))
    cuts.append(n_chunks)
    task_chunk = np.asarray(cuts, dtype=np.int64)
    bounds = chunks[task_chunk]
    first = np.searchsorted(bounds, starts, side="right") - 1
    last = np.searchsorted(bounds, stops, side="left")
    owned = (last - first == 1) & (lr_desc[:, 4] > 0)
    shared = np.flatnonzero((last - first > 1) & (lr_desc[:, 4] > 0)).astype(np.int64)
    order = np.flatnonzero(owned)
    order = order[np.argsort(first[order], kind="stable")]
    task_ptr = np.zeros(len(task_chunk), dtype=np.int64)
    np.add.at(task_ptr, first[order] + 1, 1)
    return Schedule(task_chunk, np.cumsum(task_ptr).astype(np.int64), order.astype(np.int64),
                    shared)


class Panels(NamedTuple):
    """The row-panel storage (layout in :mod:`hmat._kernels`)."""

    panel: np.ndarray  # every chunk's panel, row-major, one after another
    vt: np.ndarray  # Vt of every low-rank block
    pan_off: np.ndarray  # (n_chunks + 1,) offsets of the panels
    chunks: np.ndarray  # (n_chunks + 1,) row cuts
    seg_ptr: np.ndarray  # (n_chunks + 1,) CSR pointers into seg
    seg: np.ndarray  # (n_segments, 4): item (b low-rank, ~b dense), src, len, pos
    vt_off: np.ndarray  # (n_lowrank + 1,) offsets of Vt
    t_off: np.ndarray  # (n_lowrank + 1,) offsets of t = Vt x
    run_ptr: np.ndarray  # (n_chunks + 1,) CSR pointers into runs
    runs: np.ndarray  # (n_runs, 4): source (0: x, 1: t), src, len, pos: the product's gathers


def to_panels(shape, lr_desc, lr_data, d_desc, d_data) -> Panels:
    """Rearrange block-form factors (each block's U, Vt, D contiguous) into row panels."""
    m = shape[0]
    k_all = lr_desc[:, 4]
    live = np.flatnonzero(k_all > 0)  # rank-0 blocks contribute nothing and store nothing
    r0s = np.concatenate([d_desc[:, 0], lr_desc[live, 0]])  # same order as ``items`` below
    r1s = r0s + np.concatenate([d_desc[:, 1], lr_desc[live, 1]])
    chunks = np.unique(np.concatenate([[0, m], r0s, r1s])).astype(np.int64)
    n_chunks = len(chunks) - 1
    # one segment per (block, chunk it covers): dense blocks first, then low rank, by column
    items = np.concatenate([~np.arange(len(d_desc)), live]).astype(np.int64)
    kinds = np.concatenate([np.zeros(len(d_desc)), np.ones(len(live))])
    cols = np.concatenate([d_desc[:, 2], lr_desc[live, 2]])
    widths = np.concatenate([d_desc[:, 3], k_all[live]]).astype(np.int64)
    first = np.searchsorted(chunks, r0s)
    last = np.searchsorted(chunks, r1s)
    counts = last - first
    chunk_of = np.repeat(first, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    rep = np.repeat(np.arange(len(items)), counts)
    order = np.lexsort((cols[rep], kinds[rep], chunk_of))
    chunk_of, rep = chunk_of[order], rep[order]
    seg_len = widths[rep]
    seg_ptr = np.zeros(n_chunks + 1, dtype=np.int64)
    np.add.at(seg_ptr, chunk_of + 1, 1)
    seg_ptr = np.cumsum(seg_ptr)
    ends = np.cumsum(seg_len)
    seg_pos = ends - seg_len - np.repeat(np.concatenate([[0], ends])[seg_ptr[:-1]],
                                         np.diff(seg_ptr))
    chunk_width = np.zeros(n_chunks, dtype=np.int64)
    np.add.at(chunk_width, chunk_of, seg_len)
    pan_off = np.concatenate([[0], np.cumsum(np.diff(chunks) * chunk_width)]).astype(np.int64)
    t_off = np.concatenate([[0], np.cumsum(k_all)]).astype(np.int64)
    seg_item = items[rep]
    seg_src = np.where(seg_item >= 0, t_off[np.maximum(seg_item, 0)],
                       d_desc[np.maximum(~seg_item, 0), 2] if len(d_desc) else 0)
    seg = np.stack([seg_item, seg_src, seg_len, seg_pos], axis=1).astype(np.int64)
    panel = np.empty(pan_off[-1], dtype=lr_data.dtype)
    for s in range(len(seg)):
        c = chunk_of[s]
        lo, hi = chunks[c], chunks[c + 1]
        P = panel[pan_off[c]:pan_off[c + 1]].reshape(hi - lo, chunk_width[c])
        item, ln, pos = seg_item[s], seg_len[s], seg_pos[s]
        if item >= 0:
            r0, bm, _, _, k, off = lr_desc[item]
            rows = lr_data[off:off + bm * k].reshape(bm, k)[lo - r0:hi - r0]
        else:
            r0, bm, _, bn, off = d_desc[~item]
            rows = d_data[off:off + bm * bn].reshape(bm, bn)[lo - r0:hi - r0]
        P[:, pos:pos + ln] = rows
    vt_off = np.concatenate([[0], np.cumsum(k_all * lr_desc[:, 3])]).astype(np.int64)
    vt = np.empty(vt_off[-1], dtype=lr_data.dtype)
    for b in live:
        r0, bm, _, bn, k, off = lr_desc[b]
        vt[vt_off[b]:vt_off[b + 1]] = lr_data[off + bm * k:off + bm * k + k * bn]
    run_ptr, runs = _gather_runs(n_chunks, chunk_of, (seg_item >= 0).astype(np.int64), seg_src,
                                 seg_len, seg_pos)
    return Panels(panel, vt, pan_off, chunks, seg_ptr, seg, vt_off, t_off, run_ptr, runs)


def _gather_runs(n_chunks, chunk_of, source, src, ln, pos):
    """Merge a chunk's consecutive segments that read consecutive entries of one source (the
    columns of ``x`` of adjacent dense blocks; the ``t`` of low-rank blocks stored one after
    another) into one copy: the MobileNetV2 classifier at rank 30 has 482 segments, 80 runs."""
    cont = ((chunk_of[1:] == chunk_of[:-1]) & (source[1:] == source[:-1])
            & (src[:-1] + ln[:-1] == src[1:]) & (pos[:-1] + ln[:-1] == pos[1:]))
    starts = np.flatnonzero(np.concatenate([[True], ~cont])) if len(ln) else np.zeros(0, int)
    run_len = np.add.reduceat(ln, starts) if len(starts) else np.zeros(0, np.int64)
    runs = np.stack([source[starts], src[starts], run_len, pos[starts]], axis=1)
    run_ptr = np.zeros(n_chunks + 1, dtype=np.int64)
    np.add.at(run_ptr, chunk_of[starts] + 1, 1)
    return np.cumsum(run_ptr), np.ascontiguousarray(runs, dtype=np.int64).reshape(-1, 4)


def chunk_cost(pn: Panels, lr_desc) -> np.ndarray:
    """Entries read per chunk: its panel, plus each low-rank block's Vt spread over its rows."""
    rows = np.diff(pn.chunks)
    cost = np.diff(pn.pan_off).astype(np.float64)
    mid = 0.5 * (pn.chunks[:-1] + pn.chunks[1:])
    for r0, m, _, n, k, _ in lr_desc:
        inside = (mid > r0) & (mid < r0 + m)
        cost[inside] += k * n * rows[inside] / m
    return cost
