"""The view a scene was taken from: given by a user, read by GDAL from a Maxar .IMD, .XML or an Airbus
DIMAP beside it, or from a STAC or Planet JSON beside it, and turned into the lean of what stands
up, in grid pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import CRS

from models.synth.lean import lean_pixels, satellite_view
from service.errors import BadOption
from service.rasters import ground_steps, inspect_scene, scene_inputs
from service.scene_metadata import candidate_names, dimap_name
from service.view_geometry import (
    View,
    imd_tags,
    imd_text,
    lean_in_grid,
    requested_view,
    view_from_imd,
    view_from_metadata_text,
)
from tests import scenes

# A Maxar product's IMD as delivered, trimmed to one image group (GDAL reads it into the IMD domain).
MAXAR_IMD = """version = "28.4";
productOrderId = "012345678901_01_P001";
BEGIN_GROUP = IMAGE_1
\tsatId = "WV03";
\tmeanSatEl = 66.2;
\tmeanSatAz = 201.5;
\tmeanOffNadirViewAngle = 21.4;
END_GROUP = IMAGE_1
END;
"""


def grid_steps(crs: str, pixel_size_m: float = 0.5) -> np.ndarray:
    return ground_steps(CRS.from_user_input(crs), scenes.transform_for(crs, pixel_size_m), 1000, 1000)


@pytest.mark.parametrize("crs", [scenes.UTM, "EPSG:4326", "EPSG:3857"])
def test_tops_lean_away_from_the_satellite_by_the_tangent_of_the_view(crs):
    steps = grid_steps(crs)
    # (within 0.05 px: UTM's grid north is about a degree off true north at Tumangang)
    # Satellite due south, 45 degrees off nadir: a point 1 m up shows 1 m north, two 0.5 m pixels up.
    np.testing.assert_allclose(lean_in_grid(View(45.0, 180.0), steps), [0.0, -2.0], atol=0.05)
    # Due west, 30 degrees: tan(30) m east.
    np.testing.assert_allclose(lean_in_grid(View(30.0, 270.0), steps), [2 * math.tan(math.radians(30)), 0.0], atol=0.05)
    np.testing.assert_allclose(lean_in_grid(View(0.0, 90.0), steps), [0.0, 0.0], atol=1e-9)


def test_the_engines_scenes_record_the_view_they_were_drawn_from():
    cond = {"off_nadir_deg": 25.0, "lean_azimuth_deg": 200.0}
    view = satellite_view(cond)
    assert view.satellite_azimuth_deg == pytest.approx(20.0)
    # A 4 m car's roof on the engine's north-up 0.25 m grid, in pixels: the engine rounds to whole ones.
    lean = lean_in_grid(view, np.array([[0.25, 0.0], [0.0, -0.25]])) * 4.0
    np.testing.assert_allclose(lean, lean_pixels(cond, 0.25, 4.0), atol=0.5)


def test_a_view_is_both_angles_within_their_ranges_or_none():
    assert requested_view(None, None) is None
    assert requested_view(20, 350) == View(20.0, 350.0, "request")
    for off, az, words in [(20, None, "both"), (None, 10, "both"), (75, 10, "off-nadir"), (-1, 10, "off-nadir"),
                           (20, 400, "azimuth")]:
        with pytest.raises(BadOption, match=words):
            requested_view(off, az)


def test_gdal_reads_the_view_from_a_maxar_imd_beside_the_scene(tmp_path):
    stem = "20OCT05021400-P2AS-012345678901_01_P001"
    scene = scenes.write(tmp_path / f"{stem}.TIF", scenes.blank(64, 64))
    info = inspect_scene(scene, model_pixel_size_m=0.5)
    assert info.view is None  # none beside it yet
    (tmp_path / f"{stem}.IMD").write_text(MAXAR_IMD)
    info = inspect_scene(scene, model_pixel_size_m=0.5)
    assert info.view == View(21.4, 201.5, "scene metadata")
    with rasterio.open(scene) as src:  # an upload's .IMD, read without GDAL, reads as GDAL reads it
        assert imd_tags(MAXAR_IMD) == src.tags(ns="IMD")
    # A product that comes with its .XML and no .IMD: GDAL reads the same angles from the .XML.
    (tmp_path / f"{stem}.IMD").unlink()
    (tmp_path / f"{stem}.XML").write_text(maxar_xml(21.4, 201.5))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view == View(21.4, 201.5, "scene metadata")
    # Read without GDAL (an upload's, a download's), the .XML and the .IMD give the same view, with
    # a byte-order mark before them or not, as does a STAC item.
    for text in (maxar_xml(21.4, 201.5), MAXAR_IMD, stac_item("1", {"view:off_nadir": 21.4, "view:azimuth": 201.5})):
        assert view_from_metadata_text(text) == view_from_metadata_text("\ufeff" + text) == info.view, text


def maxar_xml(off_nadir: float, azimuth: float) -> str:
    """A Maxar product's ``.XML``, trimmed to the image's view (GDAL reads its IMD element)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<isd>\n<IMD>\n<VERSION>28.4</VERSION>\n<BAND_B/>\n<BAND_B/>\n'
            f"<IMAGE>\n<SATID>WV03</SATID>\n<MEANSATAZ>{azimuth}</MEANSATAZ>\n"
            f"<MEANOFFNADIRVIEWANGLE>{off_nadir}</MEANOFFNADIRVIEWANGLE>\n</IMAGE>\n</IMD>\n</isd>\n")


def dimap(places: list[tuple[str, float, float]]) -> str:
    """An Airbus DIMAP v2 ``DIM_*.XML`` with the line of sight's incidence and azimuth at each place."""
    located = "".join(
        f"<Located_Geometric_Values><LOCATION_TYPE>{where}</LOCATION_TYPE><Acquisition_Angles>"
        f'<AZIMUTH_ANGLE unit="deg">{azimuth}</AZIMUTH_ANGLE><VIEWING_ANGLE unit="deg">{incidence - 1.5}</VIEWING_ANGLE>'
        f'<INCIDENCE_ANGLE unit="deg">{incidence}</INCIDENCE_ANGLE></Acquisition_Angles></Located_Geometric_Values>'
        for where, incidence, azimuth in places)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Dimap_Document><Metadata_Identification>'
            '<METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT></Metadata_Identification>'
            f"<Geometric_Data><Use_Area>{located}</Use_Area></Geometric_Data></Dimap_Document>\n")


def test_gdal_reads_the_view_from_an_airbus_dimap_beside_the_scene(tmp_path):
    """A Pleiades product's IMG_*_R1C1.TIF with its DIM_*.XML: the view is the scene centre's
    incidence and azimuth, whether the DIMAP gives several places (GDAL numbers them) or one."""
    name = "PHR1A_PMS_202001011030000_ORT_1234567101"
    scene = scenes.write(tmp_path / f"IMG_{name}_R1C1.TIF", scenes.blank(64, 64))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view is None
    dim = tmp_path / f"DIM_{name}.XML"
    for places, view in (
        ([("Top Left", 12.0, 181.0), ("Center", 13.5, 180.5), ("Bottom Right", 15.0, 179.0)],
         View(13.5, 180.5, "scene metadata")),
        ([("Center", 27.25, -10.0)], View(27.25, 350.0, "scene metadata")),
        ([("Top Left", 12.0, 181.0), ("Bottom Right", 15.0, 179.0)], None),  # no centre given
    ):
        dim.write_text(dimap(places))
        assert inspect_scene(scene, model_pixel_size_m=0.5).view == view, places
        assert view_from_metadata_text(dimap(places)) == view, places  # read without GDAL, the same


def test_the_imd_railsight_writes_reads_back_and_a_broken_one_is_no_view(tmp_path):
    scene = scenes.write(tmp_path / "yard.tif", scenes.blank(64, 64))
    (tmp_path / "yard.IMD").write_text(imd_text(View(12.5, 33.0)))
    with rasterio.open(scene) as src:
        assert view_from_imd(src.tags(ns="IMD")) == View(12.5, 33.0, "scene metadata")
    assert view_from_imd({"IMAGE_1.meanOffNadirViewAngle": "12.5"}) is None  # no azimuth
    assert view_from_imd({"IMAGE_1.meanOffNadirViewAngle": "n/a", "IMAGE_1.meanSatAz": "33"}) is None
    assert view_from_imd({"IMAGE_1.meanOffNadirViewAngle": "80", "IMAGE_1.meanSatAz": "33"}) is None


def stac_item(item_id: str, properties: dict, assets: dict | None = None) -> str:
    """A STAC item (GeoJSON Feature) as a catalogue delivers it, with the view extension's angles."""
    item = {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "stac_extensions": ["https://stac-extensions.github.io/view/v1.0.0/schema.json"],
            "geometry": None, "properties": {"datetime": "2020-05-02T03:10:11Z", **properties},
            "assets": assets or {}}
    return json.dumps(item)


def test_the_view_comes_from_a_stac_item_named_after_the_scenes_id(tmp_path):
    """Maxar's open data: ``10300100A5431800.json`` beside ``10300100A5431800-visual.tif``. The
    scene's batch stamps list the item, so adding one beside a done scene reruns it."""
    scene = scenes.write(tmp_path / "10300100A5431800-visual.tif", scenes.blank(64, 64))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view is None
    before = [f[0] for f in scene_inputs(str(scene))]
    item = tmp_path / "10300100A5431800.json"
    item.write_text(stac_item("10300100A5431800", {"view:off_nadir": 17.2, "view:azimuth": 98.5},
                              {"visual": {"href": "./10300100A5431800-visual.tif", "type": "image/tiff"}}))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view == View(17.2, 98.5, "scene metadata")
    assert [f[0] for f in scene_inputs(str(scene))] == sorted([*before, str(item)])
    # Only the incidence angle (the same angle from the ground): that, with the azimuth.
    item.write_text(stac_item("10300100A5431800", {"view:incidence_angle": 19.0, "view:azimuth": -20.0}))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view == View(19.0, 340.0, "scene metadata")
    # A Maxar .IMD beside the scene, which GDAL reads, comes first.
    (tmp_path / "10300100A5431800-visual.IMD").write_text(MAXAR_IMD)
    assert inspect_scene(scene, model_pixel_size_m=0.5).view == View(21.4, 201.5, "scene metadata")


def test_the_view_comes_from_planets_metadata_json(tmp_path):
    """A Planet SkySat order: ``ID_metadata.json`` beside ``ID_basic_analytic.tif``; its view_angle
    is signed (west of the track here), and its size is the angle."""
    scene_id = "20200801_101010_ssc1d1_0001"
    scene = scenes.write(tmp_path / f"{scene_id}_basic_analytic.tif", scenes.blank(64, 64))
    (tmp_path / f"{scene_id}_metadata.json").write_text(json.dumps(
        {"id": scene_id, "type": "Feature", "properties": {"item_type": "SkySatScene", "view_angle": -12.4,
                                                           "satellite_azimuth": 284.0, "sun_azimuth": 150.2}}))
    assert inspect_scene(scene, model_pixel_size_m=0.5).view == View(12.4, 284.0, "scene metadata")


@pytest.mark.parametrize("text", [
    "{not json",
    json.dumps({"type": "Feature", "properties": {"view:off_nadir": 80.0, "view:azimuth": 10.0}}),  # past 60
    json.dumps({"type": "Feature", "properties": {"view:off_nadir": "n/a", "view:azimuth": 10.0}}),
    json.dumps({"type": "Feature", "properties": {"view:off_nadir": 12.0}}),  # no azimuth
    json.dumps({"type": "Collection", "summaries": {"view:off_nadir": [0, 30]}}),  # a collection, no properties
    json.dumps([1, 2, 3]),
    "[" * 100_000 + "]" * 100_000,  # nested past what json parses
])
def test_a_json_that_records_no_view_is_no_view_and_no_error(tmp_path, text):
    scene = scenes.write(tmp_path / "yard.tif", scenes.blank(64, 64))
    (tmp_path / "yard.json").write_text(text)
    assert inspect_scene(scene, model_pixel_size_m=0.5).view is None
    assert [f[0] for f in scene_inputs(str(scene))] == [str(scene)]  # it is not one of the scene's inputs


def test_the_json_names_tried_are_the_scenes_name_and_its_leading_parts():
    assert candidate_names(Path("/d/10300100A5431800-visual.tif")) == [
        "10300100A5431800-visual.json", "10300100A5431800-visual_metadata.json",
        "10300100A5431800.json", "10300100A5431800_metadata.json"]
    assert candidate_names(Path("a_b.c-d.tif"))[::2] == ["a_b.c-d.json", "a_b.c.json", "a_b.json", "a.json"]
    assert candidate_names(Path("_x.tif")) == ["_x.json", "_x_metadata.json"]  # no empty name
    assert dimap_name("IMG_PHR1A_PMS_2020_ORT_1234567101_R1C1.TIF") == "DIM_PHR1A_PMS_2020_ORT_1234567101.XML"
    assert dimap_name("IMG_SPOT7_PMS_001.JP2") == "DIM_SPOT7_PMS_001.XML"
    assert dimap_name("yard.tif") is None


@pytest.mark.parametrize("text", [
    "<isd><IMD><IMAGE><MEANSATAZ>201.5</MEANSATAZ></IMAGE></IMD></isd>",  # half a view
    "<isd><IMD><IMAGE><MEANSATAZ>201.5</MEANSATAZ><MEANOFFNADIRVIEWANGLE>x</MEANOFFNADIRVIEWANGLE></IMAGE></IMD></isd>",
    "<isd><IMAGE><MEANSATAZ>1</MEANSATAZ></IMAGE>",  # not well formed
    "<a>" * 5000 + "</a>" * 5000,  # nested past what the reader walks
    '{"type": "Feature", "properties": {"view:azimuth": 3}}',
    "END;",
])
def test_metadata_text_that_records_no_view_is_no_view(text):
    assert view_from_metadata_text(text) is None
