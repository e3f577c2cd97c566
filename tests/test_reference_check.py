"""The real-picture check: scoring against hand-marked car centres, and the way back from GeoJSON
to picture pixels."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping

from models.reference_check import CRS, find_label_boxes, railcars_in_pixels, score_centres, write_picture


def test_each_car_is_claimed_once_and_misses_are_counted():
    centres = [(10, 10), (30, 10), (50, 10)]
    polygons = [
        box(0, 0, 40, 20),  # two centres inside: claims the first
        box(5, 5, 15, 15),  # only (10, 10), already claimed: neither a hit nor on no car
        box(45, 5, 55, 15),  # a hit
        box(100, 100, 120, 110),  # on no marked car
    ]
    want = {"railcars": 4, "cars_marked": 3, "cars_hit": 2, "on_no_car": 1, "on_label_box": 0}
    assert score_centres(polygons, centres) == want
    assert score_centres([], centres)["cars_hit"] == 0
    # the miss half on a label box counts apart; one barely touching a box does not
    labels = [box(110, 95, 130, 105), box(0, 200, 10, 210)]
    got = score_centres([*polygons, box(9, 205, 60, 215)], centres, labels)
    assert (got["on_label_box"], got["on_no_car"]) == (1, 1)


def test_label_boxes_are_the_white_patches():
    rgb = np.full((100, 200, 3), 120, np.uint8)
    rgb[10:40, 20:150] = 255  # a label box
    rgb[30:35, 60:120] = 0  # with its text
    rgb[70:72, 10:12] = 255  # a glint: too small
    (found,) = find_label_boxes(rgb)
    assert found.bounds == (20, 10, 150, 40)


def test_detections_come_back_to_picture_pixels(tmp_path):
    transform = write_picture(np.zeros((60, 80, 3), np.uint8), tmp_path / "p.tif", 0.1)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

    def lonlat(col: float, row: float) -> tuple[float, float]:
        return to_lonlat.transform(*(transform @ (col, row)))

    car = shapely.Polygon([lonlat(*xy) for xy in [(20, 30), (50, 30), (50, 40), (20, 40)]])
    track = {"type": "LineString", "coordinates": [lonlat(0, 5), lonlat(70, 5)]}
    collection = {"features": [{"geometry": mapping(car), "properties": {"class": "railcar"}},
                               {"geometry": track, "properties": {"class": "track"}}]}  # fmt: skip
    (back,) = railcars_in_pixels(collection, transform)
    assert back.bounds == pytest.approx((20, 30, 50, 40), abs=1e-3)
