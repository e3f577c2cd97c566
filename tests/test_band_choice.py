"""Which bands are red, green and blue: the user's --bands, the colour interpretation, the band
names the scene's metadata gives (GDAL's band descriptions, a STAC item's eo:bands), else the
first three."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from service.rasters import inspect_scene, scene_inputs
from tests import scenes
from tests.test_detect_cli import detect
from tests.test_view_geometry import stac_item as view_stac_item

BLUE_GREEN_RED_NIR = [{"name": "B", "common_name": "blue"}, {"name": "G", "common_name": "green"},
                      {"name": "R", "common_name": "red"}, {"name": "N", "common_name": "nir"}]


def bgrn(path, image=None):
    """A multispectral scene stored blue, green, red, near infrared, saying nothing of which is which
    (photometric "min is black": GDAL would take four 8-bit bands for red, green, blue and alpha)."""
    rgb = scenes.blank(64, 64) if image is None else image
    data = np.concatenate([rgb[::-1], np.full((1, *rgb.shape[1:]), 200, np.uint8)])
    _, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="uint8",
                       crs=scenes.UTM, transform=scenes.transform_for(scenes.UTM, 0.5), photometric="MINISBLACK") as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        assert ColorInterp.red not in src.colorinterp
    return path


def stac_item(assets: dict) -> str:
    return view_stac_item("1040010ABC", {}, assets)  # an item with no view: only its bands count here


def bands(scene, **kw):
    info = inspect_scene(scene, model_pixel_size_m=0.5, **kw)
    return info.rgb_bands, info.bands_from


def test_a_stac_items_band_names_say_which_are_red_green_blue(tmp_path):
    scene = bgrn(tmp_path / "1040010ABC-ms.tif")
    assert bands(scene) == ((1, 2, 3), "band order")
    item = tmp_path / "1040010ABC.json"
    # The item's other asset names its bands too: only the one that is this file counts.
    item.write_text(stac_item({
        "visual": {"href": "./1040010ABC-visual.tif", "eo:bands": [{"common_name": c} for c in ("red", "green", "blue")]},
        "ms": {"href": "https://host/1040010ABC/1040010ABC-ms.tif?token=x", "eo:bands": BLUE_GREEN_RED_NIR}}))
    assert bands(scene) == ((3, 2, 1), "band names")
    # STAC 1.1 writes them as "bands" with "eo:common_name".
    item.write_text(stac_item({"ms": {"href": "1040010ABC-ms.tif", "bands": [
        {"name": b["name"], "eo:common_name": b["common_name"]} for b in BLUE_GREEN_RED_NIR]}}))
    assert bands(scene) == ((3, 2, 1), "band names")
    assert bands(scene, bands=(1, 2, 3)) == ((1, 2, 3), "option")  # the user's choice wins
    # The item is one of the files the scene is read with: adding it later reruns a batch's scene.
    assert [f[0] for f in scene_inputs(str(scene))] == sorted([str(scene), str(item)])


@pytest.mark.parametrize("assets", [
    {"ms": {"href": "./other.tif", "eo:bands": BLUE_GREEN_RED_NIR}},  # another file's bands
    {"ms": {"href": "./1040010ABC-ms.tif", "eo:bands": BLUE_GREEN_RED_NIR[:3]}},  # three names for four bands
    {"ms": {"href": "./1040010ABC-ms.tif", "eo:bands": [{"name": "B1"}, {"name": "B2"}, 7, {"common_name": 3}]}},
    {"ms": "./1040010ABC-ms.tif"},
])
def test_band_names_that_do_not_describe_this_file_are_not_used(tmp_path, assets):
    scene = bgrn(tmp_path / "1040010ABC-ms.tif")
    (tmp_path / "1040010ABC.json").write_text(stac_item(assets))
    assert bands(scene) == ((1, 2, 3), "band order")


def test_an_item_that_names_no_band_of_this_file_is_not_one_of_its_inputs(tmp_path):
    scene = bgrn(tmp_path / "1040010ABC-ms.tif")
    for assets in ({"ms": {"href": "./other.tif", "eo:bands": BLUE_GREEN_RED_NIR}},
                   {"ms": {"href": "./1040010ABC-ms.tif", "eo:bands": [{"name": "B1"}, {"name": "B2"}]}}):
        (tmp_path / "1040010ABC.json").write_text(stac_item(assets))
        assert [f[0] for f in scene_inputs(str(scene))] == [str(scene)]


def test_gdal_band_descriptions_name_them(tmp_path):
    scene = bgrn(tmp_path / "ms.tif")
    with rasterio.open(scene, "r+") as dst:
        for i, name in enumerate(("Blue", "Green", "Red", "NIR"), 1):
            dst.set_band_description(i, name)
    assert bands(scene) == ((3, 2, 1), "band names")


def test_detect_says_when_nothing_names_a_multispectral_scenes_bands(tmp_path, cli_env):
    """Read in band order, the blue-first scene's red cars are blue to the model: the CLI says the
    bands were taken in order and how to choose them. Named by a STAC item, they are read right."""
    img = scenes.blank(600, 600)
    scenes.train_of_cars(img, 50, 280, 12)
    scene = bgrn(tmp_path / "1040010ABC-ms.tif", img)
    out = tmp_path / "out.geojson"
    proc = detect(cli_env, scene, "-o", out, "--tile", 256, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "bands 1-3 read as red, green, blue: --bands to choose" in proc.stdout
    assert json.loads(out.read_text())["summary"]["counts"]["railcar"] == 0
    (tmp_path / "1040010ABC.json").write_text(stac_item({"ms": {"href": scene.name, "eo:bands": BLUE_GREEN_RED_NIR}}))
    proc = detect(cli_env, scene, "-o", out, "--tile", 256, "--quiet")
    assert proc.returncode == 0 and "--bands" not in proc.stdout, proc.stdout + proc.stderr
    fc = json.loads(out.read_text())
    assert fc["summary"]["scene"]["bands"] == [3, 2, 1] and fc["summary"]["scene"]["bands_from"] == "band names"
    assert fc["summary"]["counts"]["railcar"] == 12
