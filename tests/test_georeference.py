"""Scenes georeferenced by ground control points or RPCs rather than a geotransform."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.control import GroundControlPoint

from service.errors import NeedsWarping
from service.georeference import GCP_FIT_TOLERANCE_PX, fitted_to_gcps
from service.pipeline import DetectOptions, detect_scene
from service.rasters import write_geotiff
from tests import scenes

# A scene north-up in UTM, turned 20 degrees about its corner: a rotated geotransform, as a
# hand-georeferenced picture often has.
TURNED = scenes.transform_for(scenes.UTM, 0.5) @ Affine.rotation(20)


def _cars() -> np.ndarray:
    image = scenes.blank(400, 300)
    scenes.train_of_cars(image, 30, 100, 6)
    scenes.paint(image, "tarped_cargo", 250, 200, 20, 16)
    return image


def test_gcps_an_affine_fits_give_the_features_of_the_same_scene_with_a_geotransform(tmp_path, dask_client,
                                                                                    oracle_spec):
    image = _cars()
    plain = write_geotiff(tmp_path / "geotransform.tif", image, transform=TURNED, crs=scenes.UTM)
    gcps = scenes.write_with_gcps(tmp_path / "gcps.tif", image, TURNED)
    options = DetectOptions(device="cpu")
    want = detect_scene(plain, options, oracle_spec, dask_client)
    got = detect_scene(gcps, options, oracle_spec, dask_client)
    assert got["summary"]["counts"] == want["summary"]["counts"] == {"railcar": 6, "tarped_cargo": 1, "track": 0}
    for a, b in zip(want["features"], got["features"], strict=True):
        assert a["properties"] == b["properties"]
        np.testing.assert_allclose(a["geometry"]["coordinates"], b["geometry"]["coordinates"], atol=1e-9)
    assert want["summary"]["georeferencing"] == {"from": "geotransform"}
    assert got["summary"]["georeferencing"] == {"from": "ground control points", "points": 9, "worst_fit_px": 0.0}


def _points(transform: Affine, pixels) -> list[GroundControlPoint]:
    return [GroundControlPoint(row=r, col=c, x=(transform @ (c, r))[0], y=(transform @ (c, r))[1]) for c, r in pixels]


def test_the_fit_is_refused_past_its_tolerance_and_names_how_far_off():
    from pyproj import CRS

    corners = [(0, 0), (400, 0), (0, 300), (400, 300)]
    crs = CRS.from_user_input(scenes.UTM)
    assert fitted_to_gcps(_points(TURNED, corners), crs, "s.tif").transform.almost_equals(TURNED, precision=1e-6)
    # The fourth corner moved along the row: a least-squares fit spreads it over all four points,
    # a quarter of it at each (so 3.2 px puts each 0.8 px off, and 4.4 px 1.1 px off).
    near = _points(TURNED, corners[:3]) + _points(TURNED @ Affine.translation(3.2, 0), corners[3:])
    worst = fitted_to_gcps(near, crs, "s.tif").worst_fit_px
    assert worst == pytest.approx(0.8, abs=0.01) and worst < GCP_FIT_TOLERANCE_PX
    far = _points(TURNED, corners[:3]) + _points(TURNED @ Affine.translation(4.4, 0), corners[3:])
    with pytest.raises(NeedsWarping, match=r"one lies 1\.1 px off.*gdalwarp"):
        fitted_to_gcps(far, crs, "s.tif")
    with pytest.raises(NeedsWarping, match="2 ground control point"):
        fitted_to_gcps(_points(TURNED, corners[:2]), crs, "s.tif")
    with pytest.raises(NeedsWarping, match="lie in a line"):
        fitted_to_gcps(_points(TURNED, [(0, 0), (100, 100), (200, 200), (300, 300)]), crs, "s.tif")


def test_a_scene_that_needs_warping_runs_in_image_pixels_when_asked(tmp_path):
    from service.rasters import inspect_scene

    rpcs = scenes.write_with_gcps(tmp_path / "rpcs.tif", _cars(), TURNED, rpcs=True)
    with pytest.raises(NeedsWarping, match="gdalwarp -rpc -r bilinear .*--allow-pixel-coords"):
        inspect_scene(rpcs, model_pixel_size_m=0.5)
    for asked in ({"allow_pixel_coords": True}, {"pixel_size_m": 0.5}):
        info = inspect_scene(rpcs, model_pixel_size_m=0.5, **asked)
        assert info.crs_wkt is None and info.georeferencing is None and info.affine.is_identity
