"""kernels.linemerge against GEOS's line merger (shapely.line_merge), which it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely import GeometryType
from shapely.geometry import LineString

from kernels.linemerge import merge_lines


def _merged(lines: list[LineString]) -> tuple[np.ndarray, np.ndarray]:
    _, coords, (offsets,) = shapely.to_ragged_array(lines)
    out, out_offsets, line_of = merge_lines(coords, offsets)
    return shapely.from_ragged_array(GeometryType.LINESTRING, out, (out_offsets,)), line_of


def _same_as_geos(lines: list[LineString]) -> np.ndarray:
    mine, line_of = _merged(lines)
    geos = shapely.get_parts(shapely.line_merge(shapely.MultiLineString(lines)))
    assert sorted(shapely.to_wkb(shapely.normalize(mine))) == sorted(shapely.to_wkb(shapely.normalize(geos)))
    # Each piece lies along the line it is said to have become part of.
    assert all(shapely.covers(mine[k].buffer(1e-9), piece) for piece, k in zip(lines, line_of, strict=True))
    return mine


def test_pieces_in_any_direction_chain_into_one_line():
    pieces = [LineString([(10, 0), (20, 0)]), LineString([(0, 0), (10, 0)]), LineString([(30, 5), (20, 0)]),
              LineString([(30, 5), (40, 5), (50, 0)])]
    mine = _same_as_geos(pieces)
    assert len(mine) == 1
    assert mine[0].length == pytest.approx(sum(p.length for p in pieces))
    assert len(mine[0].coords) == 6  # every joint once


def test_three_ends_at_a_switch_stay_three_lines():
    pieces = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)]), LineString([(10, 0), (20, 8)]),
              LineString([(20, 0), (30, 0)])]
    mine = _same_as_geos(pieces)
    assert sorted(round(m.length, 6) for m in mine) == sorted(round(v, 6) for v in (10, 20, np.hypot(10, 8)))


def test_loops_close():
    square = [LineString([(0, 0), (10, 0)]), LineString([(10, 10), (10, 0)]), LineString([(10, 10), (0, 10)]),
              LineString([(0, 0), (0, 10)])]
    two = [LineString([(50, 0), (60, 5), (70, 0)]), LineString([(50, 0), (60, -5), (70, 0)])]
    ring = [LineString([(100, 0), (110, 0), (110, 10), (100, 0)])]
    mine = _same_as_geos(square + two + ring)
    assert len(mine) == 3
    assert all(m.is_closed for m in mine)


def test_random_networks_match_geos():
    rng = np.random.default_rng(3)
    for _ in range(20):
        nodes = rng.integers(0, 12, (30, 2)).astype(float)  # few distinct points: many shared ends
        pieces = []
        for a, b in rng.integers(0, 30, (int(rng.integers(5, 40)), 2)):
            if tuple(nodes[a]) == tuple(nodes[b]):
                continue
            bend = (nodes[a] + nodes[b]) / 2 + rng.uniform(-0.3, 0.3, 2)
            pieces.append(LineString([nodes[a], bend, nodes[b]]))
        if pieces:
            _same_as_geos(pieces)


def test_no_pieces():
    out, offsets, line_of = merge_lines(np.zeros((0, 2)), np.zeros(1, dtype=np.int64))
    assert len(out) == 0 and list(offsets) == [0] and len(line_of) == 0
