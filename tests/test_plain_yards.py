"""The plainly drawn check scenes (models.plain_yards): truth where the pixels are, in every CRS."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio import features
from shapely import affinity
from shapely.geometry import shape

from models.plain_yards import ROOF_COLOURS, TARP_COLOURS, write
from service.rasters import inspect_scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return out, write(out, 3, seed=5, size=384)


def _truth_in_pixels(path, cls):
    """The truth's ``cls`` geometries in the image's pixel coordinates."""
    with rasterio.open(path.with_suffix(".tif")) as src:
        to_crs = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
        inverse = ~src.transform
        image = src.read()
    matrix = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
    def reproject(xy):
        return np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1]))

    geoms = [affinity.affine_transform(shapely.transform(shape(f["geometry"]), reproject), matrix)
             for f in json.loads(path.with_suffix(".geojson").read_text())["features"]
             if f["properties"]["class"] == cls]
    return image, geoms


def _near_any(colour, palette, tolerance=14.0):
    # a roof's middle is its colour times 1.1 (a lighter panel), clipped to 255
    shades = [np.minimum(np.asarray(c, float) * k, 255) for c in palette for k in (1.0, 1.1)]
    return min(float(np.abs(colour - s).max()) for s in shades) <= tolerance


@pytest.mark.parametrize("cls, palette", [("railcar", ROOF_COLOURS), ("tarped_cargo", TARP_COLOURS)])
def test_truth_lies_on_the_drawn_objects(scenes, cls, palette):
    out, names = scenes
    checked = 0
    for name in names:
        image, geoms = _truth_in_pixels(out / name, cls)
        for g in geoms:
            inner = g.buffer(-1.0)
            if inner.area < 4:
                continue
            mask = features.rasterize([inner], out_shape=image.shape[1:]) > 0
            colour = np.median(image[:, mask], axis=1)
            assert _near_any(colour, palette), f"{name}: a {cls} over pixels of colour {colour}"
            checked += 1
    assert checked >= 5


def test_every_crs_gives_the_drawn_pixel_size(scenes):
    out, names = scenes
    kinds = []
    for name in names:
        conditions = json.loads((out / f"{name}.geojson").read_text())["conditions"]
        info = inspect_scene(out / f"{name}.tif", model_pixel_size_m=0.5)
        assert info.pixel_size_m == pytest.approx((conditions["pixel_size_m"],) * 2, rel=0.01)
        kinds.append(conditions["crs"])
    assert kinds == ["utm", "EPSG:3857", "EPSG:4326"]


def test_tracks_run_along_the_rails(scenes):
    """Every point of a true track line is on its bed: ballast or a sleeper, in a car's shadow or not,
    or under a car standing on it; never the ground beside it."""
    out, names = scenes
    ballast, sleeper, shadow = np.array([112, 104, 96.0]), np.array([96, 87, 78.0]), np.array([30, 30, 35.0])
    bed = [b * (1 - a) + shadow * a for b in (ballast, sleeper) for a in (0.0, 0.55)]
    on_ballast = 0
    for name in names:
        image, lines = _truth_in_pixels(out / name, "track")
        assert lines
        for line in lines:
            for d in np.linspace(0, line.length, 12)[1:-1]:
                p = line.interpolate(d)
                value = image[:, min(int(p.y), image.shape[1] - 1), min(int(p.x), image.shape[2] - 1)].astype(float)
                near_bed = min(float(np.abs(value - b).max()) for b in bed) <= 20
                assert near_bed or _near_any(value, ROOF_COLOURS, 20), f"{name}: a track point on {value}"
                on_ballast += near_bed
    assert on_ballast >= 10


def test_cli_refuses_a_bad_count(tmp_path):
    done = subprocess.run([sys.executable, "-m", "models.plain_yards", str(tmp_path), "--n", "0"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--n must be at least 1" in done.stderr
