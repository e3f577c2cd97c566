"""Choosing confidence floors: the rules on hand-computed cases, the floors' place in the weights'
metadata, and `railsight floors` end to end (a subprocess, the real pipeline on Dask)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, box, mapping

from models.floor_choice import SceneDetections, choose, scene_detections, with_floors, write_floors
from models.interface import ModelMeta
from tests import scenes
from tests.cli_errors import one_error_line, scene_with_bad_truth

TO_LONLAT = Transformer.from_crs(scenes.UTM, "EPSG:4326", always_xy=True)
X0, Y0 = scenes.UTM_ORIGIN


def feature(cls, geom, confidence=None):
    lonlat = shapely.transform(geom, lambda c: np.column_stack(TO_LONLAT.transform(c[:, 0], c[:, 1])))
    props = {"class": cls} if confidence is None else {"class": cls, "confidence": confidence}
    return {"type": "Feature", "properties": props, "geometry": mapping(lonlat)}


def tarp(dx):
    return box(X0 + dx, Y0 - 40, X0 + dx + 6, Y0 - 34)


def hand_made_scene() -> SceneDetections:
    """Two tarps and a 99.5 m track; detected: both tarps (0.9 and 0.6), a tarp that is not there
    (0.7), the track (0.8) and a 49.5 m track that is not there (0.65). Lines are sampled every metre
    (100 and 50 samples: half a metre clear of the rounding up that a reprojected length may tip)."""
    track = LineString([(X0, Y0 - 100), (X0 + 99.5, Y0 - 100)])
    truth = {"features": [feature("tarped_cargo", tarp(0)), feature("tarped_cargo", tarp(20)),
                          feature("track", track)]}
    detected = {"features": [
        feature("tarped_cargo", tarp(0), 0.9), feature("tarped_cargo", tarp(20), 0.6),
        feature("tarped_cargo", tarp(60), 0.7), feature("railcar", tarp(90), 0.99),
        feature("track", track, 0.8), feature("track", LineString([(X0, Y0 - 200), (X0 + 49.5, Y0 - 200)]), 0.65),
    ]}
    return scene_detections("hand", truth, detected)


def test_the_floors_chosen_follow_the_rules_on_a_hand_computed_case():
    choice = choose([hand_made_scene()], {"tarped_cargo": (0.5, 0.55, 0.65, 0.8), "track": (0.6, 0.7, 0.85)})
    cargo = {row["floor"]: row for row in choice["tarped_cargo"]["table"]}
    # 0.5 and 0.55 keep all three (2 right, 1 wrong): F1 2*2/(2*2+1) = 0.8; 0.65 keeps 0.9 and 0.7:
    # F1 0.5; 0.8 keeps only 0.9: precision 1, recall 0.5, F1 2/3. A tie goes to the lower floor.
    assert [cargo[f]["f1"] for f in (0.5, 0.55, 0.65, 0.8)] == [0.8, 0.8, 0.5, 0.6667]
    assert choice["tarped_cargo"]["chosen"] == 0.5
    track = {row["floor"]: row for row in choice["track"]["table"]}
    # 0.6 keeps the false line: recall 1, precision 100/150; 0.7 only the true line; 0.85 none.
    assert (track[0.6]["recall"], track[0.6]["precision"]) == (1.0, 0.6667)
    assert (track[0.7]["recall"], track[0.7]["precision"]) == (1.0, 1.0)
    assert track[0.85]["recall"] == 0.0 and track[0.85]["precision"] is None
    assert choice["track"]["chosen"] == 0.7


def test_the_current_floor_stays_unless_another_beats_it_by_more_than_noise():
    floors = {"tarped_cargo": (0.5, 0.55, 0.65, 0.8), "track": (0.6, 0.7, 0.85)}
    kept = choose([hand_made_scene()], floors, current={"tarped_cargo": 0.55, "track": 0.6})
    assert kept["tarped_cargo"]["chosen"] == 0.55 and "current floor" in kept["tarped_cargo"]["rule"]  # F1 0.8 too
    assert kept["track"]["chosen"] == 0.7  # 0.6 scores 0.667 against 1.0: far more than noise
    assert choose([hand_made_scene()], floors, current={"tarped_cargo": 0.8})["tarped_cargo"]["chosen"] == 0.5


def test_a_class_without_truth_gets_no_floor():
    scene = hand_made_scene()
    scene.truth["tarped_cargo"] = []
    choice = choose([scene], {"tarped_cargo": (0.5, 0.8), "track": (0.6, 0.7)})
    assert choice["tarped_cargo"]["chosen"] is None and "no truth" in choice["tarped_cargo"]["rule"]
    assert choice["track"]["chosen"] == 0.7


def test_floors_for_views_sit_beside_the_one_view_floors():
    meta = ModelMeta(extra={"min_confidence": {"tarped_cargo": 0.75, "track": 0.8}})
    four = with_floors(meta, {"tarped_cargo": 0.6, "track": 0.7}, 4, "chosen on val")
    assert meta.extra == {"min_confidence": {"tarped_cargo": 0.75, "track": 0.8}}  # the original is untouched
    assert four.own_floors(1) == {"tarped_cargo": 0.75, "track": 0.8}
    assert four.own_floors(4) == {"tarped_cargo": 0.6, "track": 0.7}
    assert four.own_floors(2) == four.own_floors(1)  # none chosen for two views: the one-view floors
    assert four.extra["min_confidence_tta_chosen_on"] == {"4": "chosen on val"}
    track_only = with_floors(meta, {"track": 0.7}, 4, "no cargo truth")  # the other class falls back
    assert track_only.own_floors(4) == {"tarped_cargo": 0.75, "track": 0.7}
    assert with_floors(four, {"track": 0.65}, 4, "again").own_floors(4) == {"tarped_cargo": 0.6, "track": 0.65}
    one = with_floors(four, {"tarped_cargo": 0.7}, 1, "again")
    assert one.own_floors(1) == {"tarped_cargo": 0.7, "track": 0.8} and one.own_floors(4) == four.own_floors(4)
    assert one.extra["min_confidence_chosen_on"] == "again"
    later = with_floors(four, {"track": 0.7}, 4, "later")  # each choice's record after the earlier ones
    assert later.extra["min_confidence_tta_chosen_on"]["4"] == "chosen on val || later"


def test_write_floors_keeps_the_weights_and_adds_the_floors(tmp_path):
    import torch

    from models.loading import read_weights
    from models.spec import read_meta

    src = small_weights(tmp_path)
    out = write_floors(src, tmp_path / "floored.pt", {"tarped_cargo": 0.55, "track": 0.65}, 2, "test")
    assert read_meta(out).own_floors(2) == {"tarped_cargo": 0.55, "track": 0.65}
    assert read_meta(out).own_floors(1) == {"track": 0.8}
    before, after = read_weights(src)[1], read_weights(out)[1]
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def run_floors(env, *args):
    return subprocess.run([sys.executable, "-m", "service.cli", "floors", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def cargo_yard(tmp_path):
    """Three blue tarps and a green track for the colour oracle, with their truth."""
    img = scenes.blank(300, 200)
    t = scenes.transform_for(scenes.UTM, 0.5)
    truth = []
    for col in (30, 90, 150):
        scenes.paint(img, "tarped_cargo", col, 40, 12, 10)
        x0, y0 = t @ (col, 50)
        x1, y1 = t @ (col + 12, 40)
        truth.append(feature("tarped_cargo", box(x0, y0, x1, y1)))
    scenes.paint(img, "track", 0, 150, 300, 3)
    truth.append(feature("track", LineString([t @ (0, 151.5), t @ (300, 151.5)])))
    folder = tmp_path / "scenes"
    folder.mkdir()
    scenes.write(folder / "yard.tif", img)
    (folder / "yard.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": truth}))
    return folder


def test_floors_cli_scores_every_floor_from_one_pass(cargo_yard, tmp_path, cli_env):
    """The colour oracle finds every tarp and the track at full confidence, so every floor scores
    the same and the rules take the lowest; the report goes to --out as well."""
    out = tmp_path / "floors.json"
    proc = run_floors(cli_env, "--scenes", cargo_yard, "--tta", 2, "--quiet", "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == json.loads(out.read_text())
    assert report["views"] == 2 and report["scenes"] == 1
    assert report["chosen"] == {"tarped_cargo": 0.5, "track": 0.6}
    cargo = report["classes"]["tarped_cargo"]["table"]
    assert len(cargo) == 9 and all((row["tp"], row["fp"], row["fn"]) == (3, 0, 0) for row in cargo)
    assert all(row["recall"] > 0.95 for row in report["classes"]["track"]["table"])
    assert "2 view(s), 1 scenes" in report["chosen_on"]


def small_weights(tmp_path):
    """An untrained, very narrow UNet with a one-view track floor, as a weights file."""
    from models.loading import save_weights
    from models.unet import build_unet

    small = {"widths": (4, 4, 8, 8), "blocks": (0, 0, 0)}
    return save_weights(tmp_path / "w.pt", build_unet(**small),
                        ModelMeta(arch_args=small, extra={"min_confidence": {"track": 0.8}}))


def test_floors_cli_writes_them_into_a_weights_file(cargo_yard, tmp_path, cli_env):
    from models.spec import read_meta

    weights = small_weights(tmp_path)
    env = {k: v for k, v in cli_env.items() if k != "RAILSIGHT_MODEL_FACTORY"}
    written = tmp_path / "floored.pt"
    proc = run_floors(env, "--scenes", cargo_yard, "--weights", weights, "--tta", 4, "--write", written, "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    meta = read_meta(written)
    assert report["written"] == str(written) and meta.own_floors(4) == report["chosen"]
    assert meta.own_floors(1) == {"track": 0.8}
    assert meta.extra["min_confidence_tta_chosen_on"]["4"] == report["chosen_on"]


def test_the_scored_pass_drops_nothing_whatever_the_settings():
    from service.commands.floors import pass_options
    from service.settings import PipelineSettings

    options = pass_options(PipelineSettings(min_confidence=0.9, tta=2), model_tile=None, tta=None)
    assert (options.min_confidence, options.own_floors, options.tta) == (0.0, False, 2)


def test_floors_cli_writes_nothing_when_no_class_has_truth(tmp_path, cli_env):
    """Scenes holding only railcars: no cargo or track floor can be chosen, so nothing is written."""
    img = scenes.blank(300, 200)
    t = scenes.transform_for(scenes.UTM, 0.5)
    cars = [feature("railcar", box(*(t @ (c, r + h)), *(t @ (c + w, r)))) for c, r, w, h in
            scenes.train_of_cars(img, 20, 100, 6)]
    folder = tmp_path / "cars"
    folder.mkdir()
    scenes.write(folder / "cars.tif", img)
    (folder / "cars.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": cars}))
    weights = small_weights(tmp_path)
    env = {k: v for k, v in cli_env.items() if k != "RAILSIGHT_MODEL_FACTORY"}
    proc = run_floors(env, "--scenes", folder, "--weights", weights, "--write", tmp_path / "x.pt", "--quiet")
    assert proc.returncode == 2 and "no floor to write" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--scenes", "/no/such/dir"], "scene directory not found"),
    (["--scenes", "."], "no scenes with truth"),
    (["--scenes", ".", "--tta", "3"], "invalid choice"),
    (["--scenes", "broken"], "truth file is not GeoJSON"),
])
def test_floors_bad_input_exit_2_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    scene_with_bad_truth(tmp_path / "broken", '{"type": "FeatureCollection", "features": [')  # cut short
    monkeypatch.chdir(tmp_path)
    assert message in one_error_line(["floors", *args], capsys)


def test_floors_cli_will_not_write_floors_for_a_factory_model(cargo_yard, tmp_path, cli_env):
    proc = run_floors(cli_env, "--scenes", cargo_yard, "--write", tmp_path / "x.pt", "--quiet")
    assert proc.returncode == 2 and "--write needs a weights file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()
