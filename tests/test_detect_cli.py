"""`railsight detect` as a user runs it: a subprocess, exit codes, one-line errors, no partial files."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import scenes


def detect(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "detect", *map(str, args)],
        env=env, capture_output=True, text=True, timeout=300,
    )


def assert_refused(proc, out, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line, never a traceback
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_detect_writes_geojson_and_prints_counts(tmp_path, cli_env):
    img = scenes.blank(600, 600)
    scenes.train_of_cars(img, 50, 280, 12)
    scene = scenes.write(tmp_path / "scene.tif", img)
    out = tmp_path / "out" / "detections.geojson"
    proc = detect(cli_env, scene, "-o", out, "--tile", 256, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "12 railcar" in proc.stdout
    fc = json.loads(out.read_text())
    assert fc["summary"]["counts"]["railcar"] == 12


def bad_scenes(tmp):
    """name -> (path, words the error line must contain)"""
    made = {}
    made["missing"] = (tmp / "nope.tif", ["not found", "nope.tif"])
    text = tmp / "notes.tif"
    text.write_text("this is not a raster\n")
    made["not_a_raster"] = (text, ["not a readable raster"])
    full = scenes.write(tmp / "full.tif", np.random.default_rng(0).integers(0, 255, (3, 600, 600), dtype=np.uint8))
    truncated = tmp / "truncated.tif"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    made["truncated"] = (truncated, ["truncated.tif"])
    two = scenes.write(tmp / "two.tif", np.zeros((2, 64, 64), np.uint8))
    made["two_bands"] = (two, ["2 band", "at least 3"])
    plain = scenes.write(tmp / "plain.tif", scenes.blank(64, 64), crs=None)
    made["no_georef"] = (plain, ["no georeferencing", "--allow-pixel-coords"])
    picture = tmp / "picture.png"  # a plain picture: GDAL warns of no geotransform as it opens one
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(picture)
    made["png_picture"] = (picture, ["no georeferencing", "--allow-pixel-coords"])
    north_up = scenes.transform_for(scenes.UTM, 0.5)
    bent = scenes.write_with_gcps(tmp / "bent.tif", scenes.blank(64, 64), north_up, bend_px=8.0)
    made["gcps_no_affine_fits"] = (bent, ["ground control points fit no affine", "7.1 px off", "gdalwarp", "bent.tif"])
    rpcs = scenes.write_with_gcps(tmp / "rpcs.tif", scenes.blank(64, 64), north_up, rpcs=True)
    made["rpcs_alone"] = (rpcs, ["RPCs alone", "gdalwarp -rpc", "rpcs.tif"])
    empty = scenes.write(tmp / "empty.tif", scenes.blank(64, 64), mask=np.zeros((64, 64), bool))
    made["all_nodata"] = (empty, ["no valid pixels"])
    return made


@pytest.mark.parametrize("case", ["missing", "not_a_raster", "truncated", "two_bands", "no_georef", "png_picture",
                                  "gcps_no_affine_fits", "rpcs_alone", "all_nodata"])
def test_bad_scenes_exit_2_with_one_line(tmp_path, cli_env, case):
    path, words = bad_scenes(tmp_path)[case]
    out = tmp_path / "out.geojson"
    assert_refused(detect(cli_env, path, "-o", out), out, *words)


def test_a_truncated_scene_names_what_gdal_found_not_an_exception_never_shown(tmp_path, cli_env):
    path, _ = bad_scenes(tmp_path)["truncated"]
    proc = detect(cli_env, path, "-o", tmp_path / "out.geojson")
    assert proc.returncode == 2
    assert "previous exception" not in proc.stderr and "TIFFRead" in proc.stderr, proc.stderr


def test_scene_over_the_size_limit(tmp_path, cli_env):
    scene = scenes.write(tmp_path / "big.tif", scenes.blank(300, 300))
    out = tmp_path / "out.geojson"
    assert_refused(detect(cli_env, scene, "-o", out, "--max-pixels", 50_000), out, "over the limit")
    env = dict(cli_env, RAILSIGHT_MAX_SCENE_PIXELS="50000")
    assert_refused(detect(env, scene, "-o", out), out, "over the limit")


@pytest.mark.parametrize("args,words", [
    (["--tile", "300"], ["tile size", "multiple of 32"]),
    (["--model-tile", "32"], ["model tile size", "at least 64"]),
    (["--bands", "1,2,9"], ["out of range"]),
    (["--bands", "x"], ["band numbers"]),
    (["--classes", "boats"], ["unknown class"]),
    (["--tta", "3"], ["--tta", "choose from 1, 2, 4, 8"]),
    (["--workers", "0"], ["--workers", "1 or more"]),
    (["--batch-size", "0"], ["--batch-size", "1 or more"]),
    (["--max-pixels", "-5"], ["--max-pixels", "1 or more"]),
])
def test_bad_options_exit_2_with_one_line(tmp_path, cli_env, args, words):
    scene = scenes.write(tmp_path / "s.tif", scenes.blank(128, 128))
    out = tmp_path / "out.geojson"
    assert_refused(detect(cli_env, scene, "-o", out, *args), out, *words)


@pytest.mark.parametrize("name,value", [("RAILSIGHT_TTA", "3"), ("RAILSIGHT_TILE", "big"), ("RAILSIGHT_MERGE_THREADS", "0")])
def test_bad_settings_in_the_environment_exit_2_naming_the_variable(tmp_path, cli_env, name, value):
    scene = scenes.write(tmp_path / "s.tif", scenes.blank(128, 128))
    out = tmp_path / "out.geojson"
    assert_refused(detect(dict(cli_env, **{name: value}), scene, "-o", out), out, f"{name}={value!r}")


def test_pixel_coords_allowed_on_request(tmp_path, cli_env):
    img = scenes.blank(300, 300)
    scenes.train_of_cars(img, 20, 100, 3)
    scene = scenes.write(tmp_path / "plain.tif", img, crs=None)
    out = tmp_path / "out.geojson"
    proc = detect(cli_env, scene, "-o", out, "--allow-pixel-coords", "--quiet")
    assert proc.returncode == 0, proc.stderr
    fc = json.loads(out.read_text())
    assert fc["summary"]["crs"] is None and fc["summary"]["counts"]["railcar"] == 3
    x, y = fc["features"][0]["geometry"]["coordinates"][0][0]
    assert 0 <= x <= 300 and 0 <= y <= 300


def _picture(path, scale: int):
    """A PNG of three coupled cars (14 x 3 m) drawn at 0.5 m / ``scale`` a pixel: no georeferencing."""
    img = scenes.blank(300, 300)
    scenes.train_of_cars(img, 20, 100, 3)
    big = img.repeat(scale, axis=1).repeat(scale, axis=2)
    Image.fromarray(np.moveaxis(big, 0, -1)).save(path)
    return path


def test_a_picture_runs_at_the_pixel_size_given(tmp_path, cli_env):
    picture = _picture(tmp_path / "picture.png", 2)  # 0.25 m a pixel, 600 x 600
    out = tmp_path / "out.geojson"
    proc = detect(cli_env, picture, "-o", out, "--pixel-size", "0.25", "--quiet")
    assert proc.returncode == 0, proc.stderr
    fc = json.loads(out.read_text())
    s = fc["summary"]
    assert s["crs"] is None and s["pixel_size_m"] == [0.25, 0.25] and s["resampled"]
    assert s["counts"]["railcar"] == 3
    lengths = sorted(f["properties"]["length_m"] for f in fc["features"] if f["properties"]["class"] == "railcar")
    assert all(13.0 <= v <= 15.0 for v in lengths), lengths
    xs = [x for f in fc["features"] for x, _ in f["geometry"]["coordinates"][0]]
    assert 38 <= min(xs) <= 42 and 210 <= max(xs) <= 222  # the train's picture pixels (40..220), not the grid's (20..110)
    # The same picture taken at the model's own 0.5 m: cars measured twice as long.
    proc = detect(cli_env, picture, "-o", out, "--allow-pixel-coords", "--quiet")
    assert proc.returncode == 0, proc.stderr
    fc = json.loads(out.read_text())
    assert fc["summary"]["pixel_size_m"] == [0.5, 0.5]
    assert all(26.0 <= f["properties"]["length_m"] <= 30.0 for f in fc["features"] if f["properties"]["class"] == "railcar")


def test_a_pixel_size_for_a_georeferenced_scene_is_refused(tmp_path, cli_env):
    scene = scenes.write(tmp_path / "s.tif", scenes.blank(128, 128))
    out = tmp_path / "out.geojson"
    assert_refused(detect(cli_env, scene, "-o", out, "--pixel-size", "0.3"), out, "georeferenced", "EPSG:32652")
    picture = _picture(tmp_path / "picture.png", 1)
    assert_refused(detect(cli_env, picture, "-o", out, "--pixel-size", "0"), out, "pixel size", "over 0")


def test_no_command_lists_the_commands_and_version_names_the_release(capsys):
    from service.cli import main

    assert main([]) == 2
    listing = capsys.readouterr().err
    assert "usage: railsight" in listing and "detect" in listing and "serve" in listing
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"railsight {importlib.metadata.version('railsight')}"


def test_a_view_given_widens_the_cars_and_is_named(tmp_path, cli_env):
    img = scenes.blank(400, 200)
    scenes.train_of_cars(img, 20, 100, 8)
    scene = scenes.write(tmp_path / "scene.tif", img)
    out = tmp_path / "out.geojson"
    proc = detect(cli_env, scene, "-o", out, "--off-nadir", "25", "--satellite-azimuth", "180", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "8 railcar" in proc.stdout and "seen 25 deg off nadir (request)" in proc.stdout, proc.stdout
    widths = [f["properties"]["width_m"] for f in json.loads(out.read_text())["features"]
              if f["properties"]["class"] == "railcar"]
    assert len(widths) == 8 and all(4.5 <= w <= 5.1 for w in widths), widths  # 3 m and a 4 m roof's 1.9 m lean


def test_half_a_view_or_one_out_of_range_is_refused(tmp_path, cli_env):
    scene = scenes.write(tmp_path / "s.tif", scenes.blank(128, 128))
    out = tmp_path / "out.geojson"
    assert_refused(detect(cli_env, scene, "-o", out, "--off-nadir", "20"), out, "both", "satellite azimuth")
    assert_refused(detect(cli_env, scene, "-o", out, "--off-nadir", "20", "--satellite-azimuth", "400"), out,
                   "satellite azimuth", "400")
    assert_refused(detect(cli_env, scene, "-o", out, "--off-nadir", "70", "--satellite-azimuth", "40"), out,
                   "off-nadir", "70")
