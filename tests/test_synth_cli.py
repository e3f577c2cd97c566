"""Writing synthetic scenes: GeoTIFFs, truth GeoJSON, and the `railsight synth` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from models.interface import CLASS_INDEX
from models.synth import rasterize_labels, render_scene, scene_seed, write_scene
from models.synth.lean import satellite_view
from service.view_geometry import view_from_imd

RAILSIGHT = shutil.which("railsight", path=str(Path(sys.executable).parent)) or "railsight"


def test_write_scene_files(tmp_path):
    scene = render_scene(31, size_px=160, pixel_size_m=0.5, min_railcars=4, nodata=True)
    paths = write_scene(scene, tmp_path, "yard")
    assert {p.name for p in paths.values()} == {"yard.tif", "yard.IMD", "yard.labels.tif", "yard.geojson"}
    with rasterio.open(paths["image"]) as src:
        view, drawn = view_from_imd(src.tags(ns="IMD")), satellite_view(scene.conditions)  # GDAL reads it with the scene
        assert view is not None and view.off_nadir_deg == pytest.approx(drawn.off_nadir_deg, abs=1e-4)
        assert view.satellite_azimuth_deg == pytest.approx(drawn.satellite_azimuth_deg, abs=1e-4)
        assert src.crs.to_string() == scene.crs
        assert src.transform.almost_equals(scene.transform, precision=1e-9)
        assert (src.count, src.dtypes[0]) == (3, "uint8")
        assert np.array_equal(src.read(), scene.image)
        assert np.array_equal(src.dataset_mask() > 0, scene.valid)
        assert not scene.valid.all()
    semantic, cores, instances = rasterize_labels(scene, scene.transform, scene.valid.shape)
    with rasterio.open(paths["labels"]) as src:
        assert src.count == 4 and src.crs.to_string() == scene.crs
        bands = src.read()
    assert np.array_equal(bands[0], semantic) and np.array_equal(bands[1] > 0, cores[0])
    assert np.array_equal(bands[2] > 0, cores[1]) and np.array_equal(bands[3], instances)
    assert (bands[0] == CLASS_INDEX["railcar"]).any()
    truth = json.loads(paths["truth"].read_text())
    ids = {f["properties"]["id"] for f in truth["features"] if f["properties"]["class"] == "railcar"}
    assert ids == {o["id"] for o in scene.objects if o["class"] == "railcar"}
    assert ids <= set(np.unique(bands[3]).tolist())
    assert truth["conditions"]["pixel_size_m"] == 0.5


def test_scene_seeds_do_not_overlap_between_runs():
    run_a = {scene_seed(1, i) for i in range(200)}
    run_b = {scene_seed(2, i) for i in range(200)}
    assert not run_a & run_b and len(run_a) == 200
    assert all(0 <= s < 2**63 for s in run_a)


def test_cli_renders_scenes(tmp_path):
    out = tmp_path / "scenes"
    proc = subprocess.run(
        [RAILSIGHT, "synth", str(out), "--n", "2", "--seed", "5", "--size", "96", "--pixel-size", "0.5", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert [s["name"] for s in index["scenes"]] == ["scene_0000", "scene_0001"]
    assert [s["seed"] for s in index["scenes"]] == [scene_seed(5, 0), scene_seed(5, 1)]
    for s in index["scenes"]:
        for name in s["files"].values():
            assert (out / name).is_file()
    # the files hold exactly what render_scene makes from the listed seed
    again = render_scene(index["scenes"][1]["seed"], size_px=96, pixel_size_m=0.5)
    with rasterio.open(out / "scene_0001.tif") as src:
        assert np.array_equal(src.read(), again.image)


def test_cli_bad_argument_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([RAILSIGHT, "synth", str(tmp_path / "x"), "--n", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--n" in lines[0], proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "two"],
        ["--size", "8"],
        ["--pixel-size", "40"],
        ["--min-railcars", "-1"],
        ["--crs", "EPSG:999999"],
        ["--season", "monsoon"],
        [],  # OUT missing
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, args):
    from service.cli import main

    argv = ["synth"] + ([str(tmp_path / "x")] if args else []) + args
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert not (tmp_path / "x").exists()
