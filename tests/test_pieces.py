"""Objects and track pieces as flat arrays (service.pieces): what goes in comes out, in order."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import shapely
from shapely import GeometryType
from shapely.geometry import LineString, Polygon, box

from kernels.vectorise import PixelLine, PixelObject
from service.pieces import Pieces


def _objects(offset: float) -> list[PixelObject]:
    holed = Polygon(box(0, 0, 10, 10).exterior.coords, [box(2, 2, 4, 4).exterior.coords])
    return [PixelObject("railcar", shapely.affinity.translate(box(0, 0, 28, 6), offset), 0.9, (200, 60, 40)),
            PixelObject("tarped_cargo", shapely.affinity.translate(holed, offset), 0.4)]


def test_objects_come_back_as_they_went_in():
    objects = _objects(0.0)
    pieces = pickle.loads(pickle.dumps(Pieces.from_objects(objects)))
    got = pieces.geometries()
    assert all(shapely.equals_exact(g, o.polygon, 0) for g, o in zip(got, objects, strict=True))
    assert list(pieces.class_names()) == ["railcar", "tarped_cargo"]
    assert list(pieces.confidence) == [0.9, 0.4]
    assert pieces.colours.tolist() == [[200, 60, 40], [-1, -1, -1]]  # the tarp's colour is not known
    assert len(got[1].interiors) == 1  # a hole survives


def test_objects_that_are_not_one_polygon_are_dropped():
    from shapely.geometry import MultiPolygon

    two = MultiPolygon([box(0, 0, 1, 1), box(3, 3, 4, 4)])
    objects = [PixelObject("tarped_cargo", two, 0.8), PixelObject("tarped_cargo", Polygon(), 0.8), *_objects(0.0)]
    pieces = Pieces.from_objects(objects)
    assert list(pieces.class_names()) == ["railcar", "tarped_cargo"]


def test_concat_keeps_order_and_moves_offsets():
    first, second = Pieces.from_objects(_objects(0.0)), Pieces.from_objects(_objects(100.0))
    empty = Pieces.empty(GeometryType.POLYGON)
    joined = Pieces.concat([first, empty, second], GeometryType.POLYGON)
    want = [o.polygon for o in _objects(0.0) + _objects(100.0)]
    got = joined.geometries()
    assert len(joined) == 4
    assert all(shapely.equals_exact(g, w, 0) for g, w in zip(got, want, strict=True))
    assert list(joined.class_names()) == ["railcar", "tarped_cargo"] * 2
    assert joined.colours[:, 0].tolist() == [200, -1, 200, -1]


def test_lines_concat_and_an_empty_set():
    a = Pieces.from_lines([PixelLine(LineString([(0, 0), (5, 5), (9, 5)]), 0.7)])
    b = Pieces.from_lines([PixelLine(LineString([(1, 1), (2, 2)]), 0.2), PixelLine(LineString([(3, 0), (3, 9)]), 0.5)])
    joined = Pieces.concat([a, b], GeometryType.LINESTRING)
    assert [len(g.coords) for g in joined.geometries()] == [3, 2, 2]
    assert list(joined.class_names()) == ["track"] * 3
    assert len(Pieces.concat([], GeometryType.LINESTRING).geometries()) == 0


def test_other_geometry_types_are_refused():
    with pytest.raises(ValueError, match="POLYGON"):
        Pieces.of(GeometryType.POLYGON, [LineString([(0, 0), (1, 1)])], ["railcar"], [0.5])
    with pytest.raises(ValueError, match="LINESTRING"):
        Pieces.concat([Pieces.from_objects(_objects(0.0))], GeometryType.LINESTRING)


def test_geometries_of_many_pieces_match_one_by_one():
    rng = np.random.default_rng(0)
    lines = [PixelLine(LineString(rng.uniform(0, 500, (int(rng.integers(2, 9)), 2))), float(rng.uniform()))
             for _ in range(200)]
    parts = [Pieces.from_lines(lines[i:i + 37]) for i in range(0, 200, 37)]
    joined = Pieces.concat(parts, GeometryType.LINESTRING)
    assert all(shapely.equals_exact(g, p.line, 0) for g, p in zip(joined.geometries(), lines, strict=True))
    assert np.array_equal(joined.confidence, [p.confidence for p in lines])


def test_taking_line_pieces_reorders_them_with_their_lengths_and_index():
    rng = np.random.default_rng(1)
    lines = [PixelLine(LineString(rng.uniform(0, 100, (int(rng.integers(2, 7)), 2))), float(rng.uniform()))
             for _ in range(40)]
    pieces = Pieces.from_lines(lines)
    order = rng.permutation(40)
    taken = pieces.take(order)
    assert all(shapely.equals_exact(g, lines[k].line, 0) for g, k in zip(taken.geometries(), order, strict=True))
    assert np.array_equal(taken.confidence, pieces.confidence[order])
    assert taken.line_lengths() == pytest.approx([lines[k].line.length for k in order])
    assert np.array_equal(np.diff(taken.offsets[0]), [len(lines[k].line.coords) for k in order])
    with pytest.raises(ValueError, match="line pieces"):
        Pieces.from_objects(_objects(0.0)).take(np.array([1, 0]))
