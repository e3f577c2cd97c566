"""Output features kept as columns: they read back as the same GeoJSON dicts, and are written the same."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Polygon, box

from service.feature_table import CHUNK, FeatureTable
from service.geojson import feature_collection, write_geojson


def _table(n: int) -> FeatureTable:
    cars = np.array([box(i, 0, i + 0.5, 2) for i in range(n)], dtype=object)
    return FeatureTable(cars, np.array([f"railcar-{i + 1}" for i in range(n)], dtype=object),
                        np.full(n, "railcar", dtype=object),
                        {"confidence": np.linspace(0, 1, n), "length_m": np.full(n, 14.0)})  # fmt: skip


def test_features_read_back_as_geojson_dicts_in_order():
    table = _table(CHUNK + 5)  # more than one chunk
    got = list(table)
    assert len(table) == len(got) == CHUNK + 5
    assert got[0] == {
        "type": "Feature",
        "id": "railcar-1",
        "geometry": {"type": "Polygon", "coordinates": [[[0.5, 0.0], [0.5, 2.0], [0.0, 2.0], [0.0, 0.0], [0.5, 0.0]]]},
        "properties": {"id": "railcar-1", "class": "railcar", "confidence": 0.0, "length_m": 14.0},
    }
    assert table[-1] == got[-1] and table[CHUNK] == got[CHUNK]
    assert table[3:6] == got[3:6] and table[::2000] == got[::2000]
    with pytest.raises(IndexError):
        table[len(table)]


def test_concat_leaves_out_properties_a_feature_does_not_have():
    track = FeatureTable(np.array([LineString([(0, 0), (3, 4)])], dtype=object), np.array(["track-1"], dtype=object),
                         np.array(["track"], dtype=object), {"confidence": np.array([0.5]), "area_m2": [math.nan]})
    both = FeatureTable.concat([_table(2), FeatureTable.empty(), track])
    assert [f["id"] for f in both] == ["railcar-1", "railcar-2", "track-1"]
    assert both[2]["properties"] == {"id": "track-1", "class": "track", "confidence": 0.5}
    assert both[2]["geometry"] == {"type": "LineString", "coordinates": [[0.0, 0.0], [3.0, 4.0]]}
    assert both[0]["properties"]["length_m"] == 14.0


def test_geometry_other_than_a_simple_polygon_or_line_is_mapped_too():
    holed = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4), (2, 4)]])
    table = FeatureTable(np.array([holed], dtype=object), np.array(["c-1"], dtype=object),
                         np.array(["tarped_cargo"], dtype=object), {})  # fmt: skip
    assert shapely.geometry.shape(table[0]["geometry"]).equals(holed)


def test_columns_must_line_up():
    with pytest.raises(ValueError, match="one value per geometry"):
        FeatureTable(np.array([box(0, 0, 1, 1)], dtype=object), np.array([], dtype=object),
                     np.array(["railcar"], dtype=object), {})  # fmt: skip
    with pytest.raises(ValueError, match="unknown feature properties"):
        FeatureTable(np.array([], dtype=object), np.array([], dtype=object), np.array([], dtype=object),
                     {"colour": np.array([])})  # fmt: skip


def test_streamed_file_equals_the_collection_as_dicts(tmp_path):
    table = _table(7)
    summary = {"counts": {"railcar": 7}, "crs": "EPSG:32652"}
    path = write_geojson(feature_collection(table, summary), tmp_path / "out.geojson")
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": list(table), "summary": summary}
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left behind


def test_a_table_is_written_as_the_same_text_as_its_dicts(tmp_path):
    """The writer takes a table's slices with coordinates as arrays (``encodable``); the text must be
    what the dicts read back from it give, byte for byte: polygons, a polygon with a hole, lines,
    counts, and properties left out where NaN or None, over more than one slice."""
    n = CHUNK + 3
    rng = np.random.default_rng(0)
    geoms = [box(x, y, x + 0.5, y + 2) for x, y in rng.uniform(-180, 180, (n, 2))]
    geoms[1] = Polygon([(0, 0), (9, 0), (9, 9), (0, 9)], [[(1, 1), (2, 1), (2, 2), (1, 1)]])
    geoms[2] = LineString([(0.123456789, 1), (5, 9), (7, 3)])
    position = np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 9, n).astype(float))
    colour = np.where(rng.random(n) < 0.5, None, "#a0b0c0").astype(object)
    table = FeatureTable(np.array(geoms, dtype=object), np.array([f"f-{i}" for i in range(n)], dtype=object),
                         np.full(n, "railcar", dtype=object),
                         {"confidence": rng.random(n), "consist_position": position,
                          "width_m": np.where(rng.random(n) < 0.2, np.nan, 3.1)}, {"colour": colour})  # fmt: skip
    summary = {"counts": {"railcar": n}}
    from_table = write_geojson(feature_collection(table, summary), tmp_path / "table.geojson").read_bytes()
    from_dicts = write_geojson(feature_collection(list(table), summary), tmp_path / "dicts.geojson").read_bytes()
    assert from_table == from_dicts
    back = json.loads(from_table)["features"]
    assert back[1]["geometry"]["type"] == "Polygon" and len(back[1]["geometry"]["coordinates"]) == 2
    assert [("consist_position" in f["properties"], "colour" in f["properties"]) for f in back] == \
        [(p == p, c is not None) for p, c in zip(position, colour, strict=True)]


def test_the_written_file_is_strict_json_whatever_the_summary_holds(tmp_path):
    summary = {"valid_fraction": np.float64(0.5), "tiles": np.int64(3), "score": float("nan"),
               "scene": {"name": "Güterbahnhof Muttenz.tif"}}  # fmt: skip
    path = write_geojson(feature_collection(_table(2), summary), tmp_path / "out.geojson")

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    back = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)  # NaN would be refused
    assert back["summary"] == {"valid_fraction": 0.5, "tiles": 3, "score": None,
                               "scene": {"name": "Güterbahnhof Muttenz.tif"}}  # fmt: skip


def test_output_geometries_made_a_chunk_at_a_time_are_the_same():
    from affine import Affine
    from pyproj import CRS

    from service.geojson import GeometryMapper

    mapper = GeometryMapper(Affine(0.5, 0, 600000, 0, -0.5, 5300000), CRS.from_epsg(32632).to_wkt())
    geoms = np.array([box(i, 0, i + 3, 2) for i in range(7)] + [LineString([(0, 0), (5, 9)])], dtype=object)
    whole = shapely.to_wkb(mapper.to_output(geoms))
    assert list(mapper.to_output_wkb(geoms, chunk=3)) == list(whole)
    assert len(mapper.to_output_wkb(geoms[:0])) == 0
    ids = np.array([f"f-{i}" for i in range(8)], dtype=object)
    names = np.full(8, "railcar", dtype=object)
    assert list(FeatureTable.from_wkb(whole, ids, names, {})) == list(FeatureTable(mapper.to_output(geoms), ids, names, {}))


def test_counts_are_integers_and_text_properties_are_left_out_where_none():
    cars = np.array([box(0, 0, 1, 2), box(2, 0, 3, 2)], dtype=object)
    table = FeatureTable(cars, np.array(["railcar-1", "railcar-2"], dtype=object), np.full(2, "railcar", dtype=object),
                         {"confidence": np.array([0.5, 0.6]), "consist_position": np.array([1.0, 2.0]),
                          "consist_cars": np.array([2.0, 2.0])},
                         {"colour": np.array(["#ff0000", None], dtype=object),
                          "consist_id": np.array(["consist-1", "consist-1"], dtype=object)})  # fmt: skip
    track = FeatureTable(np.array([LineString([(0, 0), (5, 0)])], dtype=object), np.array(["track-1"], dtype=object),
                         np.array(["track"], dtype=object), {"confidence": np.array([0.9])})
    first, second, line = (f["properties"] for f in FeatureTable.concat([table, track]))
    assert first == {"id": "railcar-1", "class": "railcar", "confidence": 0.5, "colour": "#ff0000",
                     "consist_id": "consist-1", "consist_position": 1, "consist_cars": 2}
    assert type(first["consist_position"]) is int
    assert "colour" not in second and second["consist_position"] == 2
    assert line == {"id": "track-1", "class": "track", "confidence": 0.9}
    with pytest.raises(ValueError, match="unknown"):
        FeatureTable(cars, np.array(["a", "b"], dtype=object), np.full(2, "railcar", dtype=object), {},
                     {"nickname": np.array(["x", "y"], dtype=object)})
