"""Evaluation: scoring and grouping by condition with a stand-in detector, and `railsight eval`
end to end (a subprocess, the real pipeline on Dask) with the test-only colour model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, box, mapping

from models.evaluation import condition_buckets, evaluate, find_scenes
from service.view_geometry import View, imd_text
from tests import scenes
from tests.cli_errors import one_error_line, scene_with_bad_truth

TO_LONLAT = Transformer.from_crs(scenes.UTM, "EPSG:4326", always_xy=True)


def lonlat(geom):
    return shapely.transform(geom, lambda c: np.column_stack(TO_LONLAT.transform(c[:, 0], c[:, 1])))


def collection(items, conditions=None):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": cls}, "geometry": mapping(lonlat(g))} for cls, g in items]}
    if conditions is not None:
        fc["conditions"] = conditions
    return fc


def pixel_box(t, c, r, w, h):
    x0, y0 = t @ (c, r + h)
    x1, y1 = t @ (c + w, r)
    return box(x0, y0, x1, y1)


def test_condition_buckets():
    assert condition_buckets({"pixel_size_m": 0.3, "season": "snow", "haze": 0.01}) == {
        "pixel_size": "0.25-0.40 m", "season": "snow", "haze": "clear", "compression": "unknown", "off_nadir": "nadir"}
    assert condition_buckets({"pixel_size_m": 0.95, "haze": 0.4})["haze"] == "heavy"
    assert condition_buckets({}) == {"pixel_size": "unknown", "season": "unknown", "haze": "unknown",
                                     "compression": "unknown", "off_nadir": "unknown"}
    assert [condition_buckets({"off_nadir_deg": d})["off_nadir"] for d in (0.0, 5.0, 14.9, 15.0, 30.0)] == [
        "nadir", "5-15 deg off nadir", "5-15 deg off nadir", "15-30 deg off nadir", "15-30 deg off nadir"]
    assert [condition_buckets({"jpeg_quality": q})["compression"] for q in (None, 40, 69, 70, 95)] == [
        "none", "jpeg 40-69", "jpeg 40-69", "jpeg 70-95", "jpeg 70-95"]


def test_evaluate_scores_and_groups_by_condition(tmp_path):
    t = scenes.transform_for(scenes.UTM, 0.5)
    cars = [pixel_box(t, 10 + 30 * i, 50, 28, 6) for i in range(4)]
    track = LineString([t @ (0, 53), t @ (200, 53)])
    truths = {
        "a": collection([("railcar", c) for c in cars] + [("track", track)],
                        {"pixel_size_m": 0.3, "season": "snow", "haze": 0.02, "jpeg_quality": None}),
        "b": collection([("railcar", c) for c in cars], {"pixel_size_m": 0.9, "season": "summer", "haze": 0.4,
                                                         "jpeg_quality": 55}),
    }
    detections = {
        "a": collection([("railcar", c) for c in cars] + [("track", track)]),  # perfect
        "b": collection([("railcar", c) for c in cars[:3]]),  # misses one car
    }
    for name, fc in truths.items():
        (tmp_path / f"{name}.tif").write_bytes(b"")
        (tmp_path / f"{name}.labels.tif").write_bytes(b"")
        (tmp_path / f"{name}.geojson").write_text(json.dumps(fc))
    (tmp_path / "no_truth.tif").write_bytes(b"")
    pairs = find_scenes(tmp_path)
    assert [p[0].name for p in pairs] == ["a.tif", "b.tif"]
    report = evaluate(pairs, lambda path: detections[path.stem])
    car = report["overall"]["railcar"]
    assert (car["tp"], car["fp"], car["fn"], car["count_error"]) == (7, 0, 1, -1)
    assert car["recall"] == pytest.approx(7 / 8) and car["precision"] == 1.0
    snow = report["per_condition"]["season"]["snow"]
    assert snow["scenes"] == 1 and snow["railcar"]["f1"] == 1.0 and snow["track"]["recall"] == 1.0
    heavy = report["per_condition"]["haze"]["heavy"]
    assert heavy["railcar"]["recall"] == pytest.approx(0.75)
    assert set(report["per_condition"]["pixel_size"]) == {"0.25-0.40 m", "0.80-1.00 m"}
    jpeg = report["per_condition"]["compression"]
    assert set(jpeg) == {"none", "jpeg 40-69"} and jpeg["jpeg 40-69"]["railcar"]["recall"] == pytest.approx(0.75)
    assert report["targets"]["railcar_f1"]["met"] is False
    assert report["per_scene"][1]["metrics"]["railcar"]["fn"] == 1


def run_eval(env, *args):
    return subprocess.run([sys.executable, "-m", "service.cli", "eval", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


def test_eval_cli_end_to_end(tmp_path, cli_env):
    img = scenes.blank(400, 300)
    boxes = scenes.train_of_cars(img, 20, 100, 8)
    scenes.paint(img, "track", 0, 200, 400, 3)
    scenes.write(tmp_path / "yard.tif", img)
    t = scenes.transform_for(scenes.UTM, 0.5)
    truth = collection([("railcar", pixel_box(t, *b)) for b in boxes]
                       + [("track", LineString([t @ (0, 201.5), t @ (400, 201.5)]))],
                       {"pixel_size_m": 0.5, "season": "summer", "haze": 0.1})
    (tmp_path / "yard.geojson").write_text(json.dumps(truth))
    out = tmp_path / "report.json"
    proc = run_eval(cli_env, "--scenes", tmp_path, "--out", out, "--quiet", "--model-tile", 256)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["scenes"] == 1 and "per_scene" not in shown
    car = shown["overall"]["railcar"]
    assert (car["tp"], car["fp"], car["fn"]) == (8, 0, 0) and car["mean_matched_iou"] > 0.9
    assert shown["overall"]["track"]["recall"] > 0.95 and shown["overall"]["track"]["precision"] > 0.95
    assert shown["per_condition"]["haze"]["light"]["railcar"]["f1"] == 1.0
    scene = json.loads(out.read_text())["per_scene"][0]
    assert scene["scene"] == "yard.tif" and scene["view"] is None

    # Its view beside it (20 degrees, from the south): the same cars, drawn 1.5 m wider than their
    # 3 m truth, unless told to leave the view unused.
    (tmp_path / "yard.IMD").write_text(imd_text(View(20.0, 180.0)))
    for extra, view, iou in [([], "scene metadata", (0.6, 0.75)), (["--ignore-view-metadata"], None, (0.9, 1.0))]:
        proc = run_eval(cli_env, "--scenes", tmp_path, "--out", out, "--quiet", "--model-tile", 256, *extra)
        assert proc.returncode == 0, proc.stderr
        scene = json.loads(out.read_text())["per_scene"][0]
        assert (scene["view"] or {}).get("source") == view
        assert scene["metrics"]["railcar"]["tp"] == 8 and iou[0] < scene["metrics"]["railcar"]["mean_matched_iou"] < iou[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--scenes", "/no/such/dir"], "scene directory not found"),
    (["--scenes", "."], "no scenes with truth"),
    (["--scenes", ".", "--limit", "0"], "--limit must be at least 1"),
    (["--scenes", ".", "--device", "tpu"], "invalid choice"),
    (["--scenes", "broken"], "truth file is not GeoJSON"),
])
def test_eval_bad_input_exit_2_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    scene_with_bad_truth(tmp_path / "broken", "not json")
    monkeypatch.chdir(tmp_path)
    assert message in one_error_line(["eval", *args], capsys)
