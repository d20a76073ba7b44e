"""hmat._layout: block form, row panels, gather runs, the thread schedule and the byte tables.

The panel and schedule tables have no public view (they are what ``HMatrix`` stores), so these
tests build them with ``hmat._layout``'s functions from the public block form
(``H.block_form()``) instead of reading ``HMatrix``'s private attributes.
"""

from __future__ import annotations

import numpy as np
import pytest

import hmat
from hmat import _kernels
from hmat._layout import (
    chunk_cost,
    descriptor_nbytes,
    pack_blocks,
    schedule,
    to_panels,
)
from hmat.examples import inverse_distance
from hmat.hmatrix import HMatrix

RNG = np.random.default_rng(7)


def _kernel_matrix(m, n):
    i = np.arange(m)[:, None] / m
    j = np.arange(n)[None, :] / n
    return 1.0 / (1.0 + 40 * np.abs(i - j)) + 0.01 * RNG.standard_normal((m, n))


def _panels(H):
    return to_panels(H.shape, *H.block_form())


def _wmax(pn):
    widths = np.diff(pn.pan_off) // np.maximum(np.diff(pn.chunks), 1)
    return int(widths.max(initial=0))


@pytest.mark.parametrize("n_tasks", [1, 2, 3, 7, 40])
@pytest.mark.parametrize("parallel", [False, True])
def test_schedules_with_shared_blocks(n_tasks, parallel):
    """Any task count, cuts inside blocks (shared blocks), serial and parallel: same product.
    HMatrix fixes the task count to the thread count, so other counts are only reachable by
    handing a schedule to the kernel directly."""
    A = _kernel_matrix(203, 157)
    H = hmat.compress(A, rank=6, leaf_size=9, admissibility="weak")
    pn = _panels(H)
    plan = schedule(pn.chunks, chunk_cost(pn, H.lr_desc), H.lr_desc, n_tasks)
    tc = plan.task_chunk
    assert tc[0] == 0 and tc[-1] == len(pn.chunks) - 1 and np.all(np.diff(tc) > 0)
    assert len(tc) - 1 <= n_tasks
    bounds = pn.chunks[tc]
    # every live low-rank block is owned by the one task holding all its rows, or shared
    owned = [set(plan.task_lr[plan.task_ptr[t]:plan.task_ptr[t + 1]].tolist())
             for t in range(len(tc) - 1)]
    for b, (r0, m, _, _, k, _) in enumerate(H.lr_desc):
        inside = [t for t in range(len(tc) - 1) if bounds[t] <= r0 and r0 + m <= bounds[t + 1]]
        if k == 0:
            assert b not in plan.shared and all(b not in o for o in owned)
        elif inside:
            assert b in owned[inside[0]] and b not in plan.shared
        else:
            assert b in plan.shared and all(b not in o for o in owned)
    if n_tasks >= 7:
        assert len(plan.shared) > 0  # the weak partition forces cuts through blocks
    for p in (1, 3, 6):
        XT = RNG.standard_normal((p, H.shape[1]))
        YT = np.full((p, H.shape[0]), np.nan)
        packed, _ = _kernels.pack_plan({**pn._asdict(), **plan._asdict(), "lr_desc": H.lr_desc},
                                       _wmax(pn))
        _kernels.product(pn.panel, pn.vt, packed, XT, YT, 0.0, parallel)
        np.testing.assert_allclose(YT, (H.to_dense() @ XT.T).T, atol=1e-11)


def test_chunk_cost_adds_up_to_the_entries():
    H = hmat.compress(_kernel_matrix(150, 110), rank=5, leaf_size=8)
    pn = _panels(H)
    cost = chunk_cost(pn, H.lr_desc)
    assert cost.shape == (len(pn.chunks) - 1,)
    assert cost.sum() == pytest.approx(H.n_entries)


def test_panels_hold_every_block_once():
    """The row panels are a rearrangement of the block factors: block form round-trips."""
    A = _kernel_matrix(150, 110)
    for kw in (dict(rank=5, leaf_size=8), dict(tol=1e-3, adaptive=True, leaf_size=8),
               dict(rank=3, leaf_size=7, cluster="data")):
        H = hmat.compress(A, **kw)
        H2 = HMatrix(H.shape, H.lr_desc, H.lr_data, H.d_desc, H.d_data, H.row_perm, H.col_perm)
        np.testing.assert_array_equal(_panels(H2).panel, _panels(H).panel)
        np.testing.assert_array_equal(H2.to_dense(), H.to_dense())
        pn = _panels(H)
        assert pn.panel.size + pn.vt.size == H.n_entries == H.lr_data.size + H.d_data.size
        assert H.n_entries == int(np.sum(H.lr_desc[:, 4] * (H.lr_desc[:, 1] + H.lr_desc[:, 3]))
                                  + np.sum(H.d_desc[:, 1] * H.d_desc[:, 3]))
        for b in range(len(H.lr_desc)):
            u, vt = H.lowrank_factors(b)
            r0, m, c0, n, k, _ = H.lr_desc[b]
            assert u.shape == (m, k) and vt.shape == (k, n)


def test_nbytes_counts_the_schedule():
    """nbytes = descriptors + every panel table + the schedule (+ permutations) + the header of
    the plan (the kernels' tables packed in one array, which the tables are views of)."""
    H = hmat.compress(_kernel_matrix(100, 100), rank=4, leaf_size=8)
    pn = _panels(H)
    sch = schedule(pn.chunks, chunk_cost(pn, H.lr_desc), H.lr_desc, _kernels.N_TASKS)
    assert sch.nbytes > 0
    assert H.nbytes == (H.lr_desc.nbytes + H.d_desc.nbytes + sum(a.nbytes for a in pn)
                        + sch.nbytes + 8 * _kernels.PLAN_HEADER)
    tables = [H.lr_desc, *H._schedule] + [getattr(H._pn, f) for f in _kernels.PLAN_TABLES
                                           if f in H._pn._fields]
    assert all(np.shares_memory(t, H._plan) for t in tables if t.size)


@pytest.mark.parametrize("kw", [dict(rank=4), dict(tol=1e-3, adaptive=True),
                                dict(rank=3, cluster="data")])
def test_descriptor_nbytes_is_part_of_nbytes(kw):
    """descriptor_nbytes counts tables that HMatrix.nbytes holds beyond the stored data."""
    H = hmat.compress(inverse_distance(160)[:, :130], leaf_size=8, **kw)
    data = H.n_entries * H.dtype.itemsize
    desc = descriptor_nbytes(len(H.lr_desc), len(H.d_desc))
    assert 0 < desc <= H.nbytes - data
    assert desc >= H.lr_desc.nbytes + H.d_desc.nbytes


def test_gather_runs_cover_the_segments_and_merge_neighbours():
    """The product's copy runs are the chunk's segments, merged where both the source entries
    and the panel columns continue: same columns covered, fewer copies."""
    A = _kernel_matrix(300, 260)
    H = hmat.compress(A, rank=5, leaf_size=16)
    pn = _panels(H)
    assert len(pn.runs) < len(pn.seg)
    for c in range(len(pn.chunks) - 1):
        seg = pn.seg[pn.seg_ptr[c]:pn.seg_ptr[c + 1]]
        runs = pn.runs[pn.run_ptr[c]:pn.run_ptr[c + 1]]
        cover_s = sorted((int(p), int(p + n)) for _, _, n, p in seg)
        cover_r = sorted((int(p), int(p + n)) for _, _, n, p in runs)
        assert cover_r[0][0] == cover_s[0][0] and cover_r[-1][1] == cover_s[-1][1]
        assert sum(b - a for a, b in cover_r) == sum(b - a for a, b in cover_s)
        for src_kind, src, n, pos in runs:  # every run reads one source, contiguously
            inside = seg[(seg[:, 3] >= pos) & (seg[:, 3] < pos + n)]
            assert np.all((inside[:, 0] >= 0) == bool(src_kind))
            assert np.all(inside[:, 1] - src == inside[:, 3] - pos)


def test_pack_blocks_orders_and_checks():
    u, vt = np.ones((2, 1)), np.ones((1, 3))
    lr_desc, lr_data, d_desc, d_data = pack_blocks(
        [(2, 0, u, vt), (0, 0, 2 * u, vt)], [(0, 3, np.zeros((4, 1)))], np.float32)
    assert lr_desc[:, 0].tolist() == [0, 2]  # sorted by row
    assert lr_desc[:, 5].tolist() == [0, 5] and lr_data.dtype == np.float32
    assert lr_data[:2].tolist() == [2.0, 2.0]
    assert d_desc.tolist() == [[0, 4, 3, 1, 0]] and d_data.size == 4
    with pytest.raises(ValueError, match="U is"):
        pack_blocks([(0, 0, u, np.ones((2, 3)))], [], np.float64)
    empty = pack_blocks([], [], np.float64)
    assert empty[0].shape == (0, 6) and empty[2].shape == (0, 5)


def test_plan_packs_the_kernel_tables_and_unpacks_them_in_order():
    """pack_plan writes each table once (the HMatrix's tables are views into it) and the
    kernels' _unpack reads them back in PLAN_TABLES order, with wmax."""
    H = hmat.compress(_kernel_matrix(120, 90), rank=4, leaf_size=8, admissibility="weak")
    tables = {**H._pn._asdict(), **H._schedule._asdict(), "lr_desc": H.lr_desc}
    plan, views = _kernels.pack_plan(tables, 17)
    out = _kernels._unpack(plan)
    assert len(out) == len(_kernels.PLAN_TABLES) + 1 and out[-1] == 17
    for name, got in zip(_kernels.PLAN_TABLES, out, strict=False):
        np.testing.assert_array_equal(got, tables[name], err_msg=name)
        np.testing.assert_array_equal(views[name], tables[name], err_msg=name)
    assert out[3].shape[1] == 4 and out[5].shape[1] == 6
