"""The output opens in GDAL/OGR (pyogrio wraps the same GeoJSON driver that ogrinfo and QGIS use)."""

from __future__ import annotations

import pyogrio.raw

from service.geojson import write_geojson
from service.pipeline import DetectOptions, detect_scene
from tests import scenes


def test_ogr_reads_every_feature_in_wgs84(tmp_path, dask_client, oracle_spec):
    img = scenes.blank(900, 700)
    scenes.train_of_cars(img, 30, 200, 15)
    scenes.paint(img, "tarped_cargo", 500, 500, 30, 20)
    scenes.paint(img, "track", 0, 400, 900, 3)
    scene = scenes.write(tmp_path / "scene.tif", img, crs="EPSG:3857")
    fc = detect_scene(scene, DetectOptions(device="cpu", tile=256), oracle_spec, dask_client)
    out = write_geojson(fc, tmp_path / "out.geojson")
    meta, _, geoms, fields = pyogrio.raw.read(out)
    assert meta["crs"] == "EPSG:4326"
    assert len(geoms) == len(fc["features"]) == 15 + 1 + 1
    classes = list(fields[list(meta["fields"]).index("class")])
    assert classes.count("railcar") == 15 and classes.count("tarped_cargo") == 1 and classes.count("track") == 1
