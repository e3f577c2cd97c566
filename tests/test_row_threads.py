"""The merge's row-wise steps on threads (kernels.row_threads) give what one thread gives."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

import kernels.row_threads
import kernels.track_gaps
from kernels.line_smoothing import smooth_lines
from kernels.row_threads import by_rows, merge_threads, row_slices, threads_for_merge
from kernels.track_gaps import BridgeRules, bridge_gaps


def test_rows_are_cut_into_slices_of_at_least_the_smallest_size():
    assert row_slices(10, min_rows=4, threads=8) == [slice(0, 5), slice(5, 10)]
    assert row_slices(10, min_rows=20, threads=8) == [slice(0, 10)]
    assert row_slices(0, min_rows=4, threads=8) == [slice(0, 0)]
    cuts = row_slices(1000, min_rows=7, threads=6)
    assert len(cuts) == 6 and cuts[0].start == 0 and cuts[-1].stop == 1000
    assert all(a.stop == b.start for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def test_by_rows_joins_the_slices_in_order_and_each_array_a_function_returns():
    x = np.arange(30.0)
    points = shapely.points(np.column_stack([x, 2 * x]))
    seen = set()

    def double_and_x(v, p):
        seen.add(threading.get_ident())
        return 2 * v, shapely.get_x(p)

    with threads_for_merge(3):
        assert merge_threads() == 3
        doubled, xs = by_rows(double_and_x, x, points, min_rows=4)
        assert shapely.equals(by_rows(shapely.centroid, points, min_rows=4), points).all()
    assert doubled.tolist() == (2 * x).tolist() and xs.tolist() == x.tolist()
    assert threading.get_ident() not in seen  # the slices ran on the merge's threads
    with threads_for_merge(None):
        assert merge_threads() >= 1


@pytest.fixture()
def broken_track_field():
    """Twelve parallel tracks 9 px apart, each drawn as wavy pieces with gaps of 20-40 px."""
    rng = np.random.default_rng(3)
    lines = []
    for k in range(12):
        x = 0.0
        while x < 900:
            length = rng.uniform(60, 140)
            xs = np.linspace(x, x + length, 30)
            lines.append(LineString(np.column_stack([xs, 9.0 * k + rng.normal(0, 0.4, xs.size)])))
            x += length + rng.uniform(20, 40)
    return np.array(lines, dtype=object)


def test_bridging_and_smoothing_on_threads_give_the_lines_of_one_thread(broken_track_field, monkeypatch):
    rules = BridgeRules(max_gap=60.0, tangent=12.0, end_skip=2.0, lateral=1.5, max_shift=2.0, block_length=300.0)

    def merged(threads: int):
        with threads_for_merge(threads):
            joined, line_of, bridged = bridge_gaps(broken_track_field, rules)
            return smooth_lines(joined, step=1.0, half_window=4.0, simplify=0.25), line_of, bridged

    one = merged(1)
    monkeypatch.setattr(kernels.row_threads, "MIN_ROWS", 3)
    monkeypatch.setattr(kernels.track_gaps, "CHUNK", 5)
    three = merged(3)
    assert len(one[0]) < len(broken_track_field)  # gaps were bridged
    assert len(three[0]) == len(one[0]) and shapely.equals_exact(three[0], one[0], tolerance=0).all()
    assert three[1].tolist() == one[1].tolist() and three[2].tolist() == one[2].tolist()
