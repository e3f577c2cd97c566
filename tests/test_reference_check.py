"""The real-picture check: scoring against hand-marked car centres, and the way back from GeoJSON
to picture pixels."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from PIL import Image
from pyproj import Transformer
from shapely.geometry import box, mapping

from models.reference_check import CRS, railcars_in_pixels, score_centres, write_picture


def test_each_car_is_claimed_once_and_misses_are_counted():
    centres = [(10, 10), (30, 10), (50, 10)]
    polygons = [
        box(0, 0, 40, 20),  # two centres inside: claims the first
        box(5, 5, 15, 15),  # only (10, 10), already claimed: neither a hit nor on no car
        box(45, 5, 55, 15),  # a hit
        box(100, 100, 120, 110),  # on no marked car
    ]
    assert score_centres(polygons, centres) == {"railcars": 4, "cars_marked": 3, "cars_hit": 2, "on_no_car": 1}
    assert score_centres([], centres)["cars_hit"] == 0


def test_detections_come_back_to_picture_pixels(tmp_path):
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(picture)
    transform = write_picture(picture, tmp_path / "p.tif", 0.1)
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)

    def lonlat(col: float, row: float) -> tuple[float, float]:
        return to_lonlat.transform(*(transform @ (col, row)))

    car = shapely.Polygon([lonlat(*xy) for xy in [(20, 30), (50, 30), (50, 40), (20, 40)]])
    track = {"type": "LineString", "coordinates": [lonlat(0, 5), lonlat(70, 5)]}
    collection = {"features": [{"geometry": mapping(car), "properties": {"class": "railcar"}},
                               {"geometry": track, "properties": {"class": "track"}}]}  # fmt: skip
    (back,) = railcars_in_pixels(collection, transform)
    assert back.bounds == pytest.approx((20, 30, 50, 40), abs=1e-3)
