"""`railsight batch`: scene lists, resumption after an interruption, bad scenes, indexed pods, summary.

Most tests run the command in this process against one small threaded Dask cluster (fast); one test
runs the real console script with its own LocalCluster, as a Kubernetes pod would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client

from models.spec import ModelSpec
from service import cli
from service.commands import batch
from service.errors import BadOption, SceneNotFound
from service.pipeline import DetectOptions
from service.view_geometry import View, imd_text
from tests import scenes

ROOT = Path(__file__).resolve().parents[1]
ORACLE = "tests.oracle_model:build"


@pytest.fixture(scope="module")
def client():
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


@pytest.fixture
def use_client(client, monkeypatch):
    """`railsight batch` in this process runs on the shared cluster instead of starting one."""
    monkeypatch.setattr(batch, "dask_client", lambda settings: contextlib.nullcontext(client))
    monkeypatch.setenv("RAILSIGHT_MODEL_FACTORY", ORACLE)
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    return client


def make_scene(path: Path, cars: int) -> Path:
    image = scenes.blank(40 + 30 * cars, 80)
    scenes.train_of_cars(image, 10, 30, cars)
    path.parent.mkdir(parents=True, exist_ok=True)
    return scenes.write(path, image)


@pytest.fixture
def scene_list(tmp_path):
    """Three scenes, two of them called scene.tif in different folders, with 1, 2 and 3 railcars."""
    make_scene(tmp_path / "data" / "east" / "scene.tif", 1)
    make_scene(tmp_path / "data" / "west" / "scene.tif", 2)
    make_scene(tmp_path / "data" / "yard.tif", 3)
    listing = tmp_path / "data" / "scenes.txt"
    listing.write_text("# three scenes\neast/scene.tif\n\nwest/scene.tif\n  yard.tif  \n")
    return listing


def railsight(*args: str) -> int:
    return cli.main(["batch", "--quiet", *args])


def outputs(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.geojson"))}


def no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp-" in p.name or ".stripes-" in p.name or ".cog-" in p.name]


# ---------------------------------------------------------------------------------------------- list


def test_scene_list_skips_comments_resolves_relative_paths_and_keeps_names_unique(scene_list):
    entries = batch.read_scene_list(scene_list)
    base = scene_list.parent
    assert [e.scene for e in entries] == [str(base / "east/scene.tif"), str(base / "west/scene.tif"), str(base / "yard.tif")]
    assert [e.index for e in entries] == [0, 1, 2]
    names = [e.name for e in entries]
    assert len(set(names)) == 3 and names[0].startswith("scene-") and names[1].startswith("scene-")
    assert batch.output_name(entries[0].scene) == names[0]  # stable across runs


def test_urls_are_kept_as_written(tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("s3://bucket/a.tif\n/vsicurl/https://example.org/b.tif\n")
    assert [e.scene for e in batch.read_scene_list(listing)] == ["s3://bucket/a.tif", "/vsicurl/https://example.org/b.tif"]


@pytest.mark.parametrize("content", [None, "", "# only a comment\n\n"])
def test_missing_or_empty_list_is_a_user_error(tmp_path, content):
    listing = tmp_path / "l.txt"
    if content is not None:
        listing.write_text(content)
    with pytest.raises(BadOption):
        batch.read_scene_list(listing)


def test_index_comes_from_the_job_and_must_be_in_range(monkeypatch, scene_list):
    entries = batch.read_scene_list(scene_list)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    assert batch.select(entries, batch.job_index()) == [entries[2]]
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "two")
    with pytest.raises(BadOption):
        batch.job_index()
    with pytest.raises(BadOption, match="out of range"):
        batch.select(entries, 3)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    assert batch.select(entries, batch.job_index()) == entries


# ---------------------------------------------------------------------------------------------- runs


def test_batch_writes_one_geojson_per_scene_and_a_summary(use_client, scene_list, tmp_path, capsys):
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    files = outputs(out)
    assert len(files) == 3
    assert sorted(fc["summary"]["counts"]["railcar"] for fc in files.values()) == [1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["done"] == 3 and summary["counts"]["railcar"] == 6
    assert {row["output"] for row in summary["scenes"]} == set(files)
    assert no_temporaries(out)
    assert "3 done, 0 failed, 0 pending" in capsys.readouterr().out


def test_interrupted_run_resumes_with_nothing_lost_or_duplicated(use_client, scene_list, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = batch.detect_scene
    calls: list[str] = []

    def interrupted_on_second(scene, *args, **kwargs):
        calls.append(scene)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(batch, "detect_scene", interrupted_on_second)
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--concurrency", "1") == 130
    first = outputs(out)
    assert len(first) == 1 and no_temporaries(out)
    done_marker = next((out / ".batch").glob("*.done.json"))
    stamp = done_marker.stat().st_mtime_ns
    partial = json.loads((out / "summary.json").read_text())
    assert (partial["done"], partial["pending"], partial["complete"]) == (1, 2, False)

    calls.clear()
    monkeypatch.setattr(batch, "detect_scene", lambda scene, *a, **k: calls.append(scene) or real(scene, *a, **k))
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert len(calls) == 2  # the finished scene was not run again
    assert done_marker.stat().st_mtime_ns == stamp
    files = outputs(out)
    assert len(files) == 3 and no_temporaries(out)
    for fc in files.values():
        ids = [f["id"] for f in fc["features"]]
        assert len(ids) == len(set(ids)) == fc["summary"]["counts"]["railcar"]
    assert json.loads((out / "summary.json").read_text())["counts"]["railcar"] == 6

    calls.clear()
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert calls == []


def features_by_output(out: Path) -> dict[str, list]:
    return {name: fc["features"] for name, fc in outputs(out).items()}


def test_scenes_run_at_once_write_what_one_at_a_time_writes(use_client, scene_list, tmp_path):
    one, three = tmp_path / "one", tmp_path / "three"
    assert railsight("--scenes", str(scene_list), "--out", str(one), "--concurrency", "1") == 0
    assert railsight("--scenes", str(scene_list), "--out", str(three), "--concurrency", "3") == 0
    assert features_by_output(one) == features_by_output(three) and len(outputs(three)) == 3
    summary = json.loads((three / "summary.json").read_text())
    assert summary["complete"] and summary["counts"]["railcar"] == 6 and no_temporaries(three)


def test_an_interrupted_run_of_scenes_at_once_stops_them_all_and_resumes(use_client, scene_list, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    """Ctrl-C while two scenes run: the one still running is told to stop (the first scene here waits
    for that, then runs and is stopped at once), the third never starts, nothing is written, and
    the rerun does them all."""
    out = tmp_path / "out"
    real = batch.detect_scene
    events: list = []

    def interrupted_on_second(scene, *args, cancel=None, **kwargs):
        events.append(cancel)
        if len(events) == 2:
            raise KeyboardInterrupt
        assert cancel.wait(timeout=30), "the running scene was not told to stop"
        return real(scene, *args, cancel=cancel, **kwargs)

    monkeypatch.setattr(batch, "detect_scene", interrupted_on_second)
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--concurrency", "2") == 130
    assert len(events) == 2 and events[0] is events[1] and events[0].is_set()
    assert not outputs(out) and not list((out / ".batch").glob("*.done.json")) and no_temporaries(out)
    monkeypatch.setattr(batch, "detect_scene", real)
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["railcar"] == 6 and len(outputs(out)) == 3


def test_concurrency_below_one_is_refused(use_client, scene_list, tmp_path, capsys):
    assert railsight("--scenes", str(scene_list), "--out", str(tmp_path / "out"), "--concurrency", "0") == 2
    assert capsys.readouterr().err.strip() == "railsight: error: --concurrency must be at least 1, got 0"


def test_output_without_marker_or_with_wrong_size_is_redone(use_client, scene_list, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    entries = batch.read_scene_list(scene_list)
    layout = batch.Layout(out)
    layout.done(entries[0]).unlink()  # died between the GeoJSON's rename and the marker's
    with open(layout.geojson(entries[1]), "a") as fh:  # changed behind our back
        fh.write(" ")
    calls: list[str] = []
    real = batch.detect_scene
    monkeypatch.setattr(batch, "detect_scene", lambda scene, *a, **k: calls.append(scene) or real(scene, *a, **k))
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert sorted(calls) == sorted([entries[0].scene, entries[1].scene])
    assert len(outputs(out)) == 3


def test_changed_options_redo_the_scene(use_client, scene_list, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--index", "2") == 0
    calls: list[str] = []
    real = batch.detect_scene
    monkeypatch.setattr(batch, "detect_scene", lambda scene, *a, **k: calls.append(scene) or real(scene, *a, **k))
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--index", "2") == 0
    assert calls == []
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--index", "2", "--min-confidence", "0.5") == 0
    assert len(calls) == 1


def test_a_scene_whose_files_changed_is_redone(use_client, scene_list, tmp_path, monkeypatch):
    """A view added beside a done scene (its .IMD), or its image written again, makes it run again;
    the view then shows in its output. Unchanged, it stays done."""
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    entries = batch.read_scene_list(scene_list)
    calls: list[str] = []
    real = batch.detect_scene
    monkeypatch.setattr(batch, "detect_scene", lambda scene, *a, **k: calls.append(scene) or real(scene, *a, **k))
    Path(entries[0].scene).with_suffix(".IMD").write_text(imd_text(View(20.0, 90.0)))
    make_scene(Path(entries[1].scene), 2)
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert sorted(calls) == sorted([entries[0].scene, entries[1].scene])
    view = outputs(out)[batch.Layout(out).geojson(entries[0]).name]["summary"]["view"]
    assert (view["off_nadir_deg"], view["source"]) == (20.0, "scene metadata")
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert len(calls) == 2


def test_bad_scene_is_recorded_and_the_rest_continue(use_client, scene_list, tmp_path, capsys):
    (scene_list.parent / "broken.tif").write_text("not a raster")
    scene_list.write_text(scene_list.read_text() + "broken.tif\nmissing.tif\n")
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "broken.tif" in line][0].startswith("railsight: error: ")
    assert err[-1].startswith("railsight: error: 2 of 5 scenes failed")
    assert "Traceback" not in "\n".join(err)
    assert len(outputs(out)) == 3 and no_temporaries(out)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (3, 2)
    codes = {row["scene"].rsplit("/", 1)[-1]: row["error"]["code"] for row in summary["scenes"] if row["status"] == "failed"}
    assert codes == {"broken.tif": "not_a_raster", "missing.tif": "scene_not_found"}

    # The missing scene turns up: a rerun does just that one and clears its error.
    make_scene(scene_list.parent / "missing.tif", 2)
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (4, 1)
    assert not list((out / ".batch").glob("missing-*.error.json"))


def test_one_bad_scene_in_an_indexed_pod_fails_like_detect(use_client, scene_list, tmp_path, monkeypatch, capsys):
    scene_list.write_text(scene_list.read_text() + "missing.tif\n")
    out = tmp_path / "out"
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"railsight: error: scene not found: {scene_list.parent / 'missing.tif'}"]
    assert not outputs(out)
    assert len(list((out / ".batch").glob("*.error.json"))) == 1


def test_indexed_pods_each_do_one_scene_and_the_last_writes_the_summary(use_client, scene_list, tmp_path, monkeypatch):
    out = tmp_path / "out"
    for i in (2, 0):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(i))
        assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    assert len(outputs(out)) == 2
    assert not (out / "summary.json").exists()  # scene 1 still pending: no pod has rebuilt it yet
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["counts"]["railcar"] == 6
    # --summarize rebuilds it at any time, from the markers alone.
    (out / "summary.json").unlink()
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--summarize") == 0
    assert json.loads((out / "summary.json").read_text())["done"] == 3


def test_class_rasters_are_part_of_done(use_client, scene_list, tmp_path):
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out), "--index", "0", "--class-raster") == 0
    entry = batch.read_scene_list(scene_list)[0]
    layout = batch.Layout(out)
    assert layout.classes(entry).is_file()
    assert batch.completed(layout, entry, class_raster=True)
    layout.classes(entry).unlink()
    assert not batch.completed(layout, entry, class_raster=True)


def test_a_model_that_cannot_load_stops_the_run(use_client, scene_list, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAILSIGHT_MODEL_FACTORY", "tests.no_such_module:build")
    out = tmp_path / "out"
    assert railsight("--scenes", str(scene_list), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot import model factory" in err[0]
    assert not outputs(out)


def test_process_raises_scene_errors_when_asked_to_stop(client, tmp_path):
    listing = tmp_path / "l.txt"
    listing.write_text("nope.tif\n")
    entries = batch.read_scene_list(listing)
    with pytest.raises(SceneNotFound):
        batch.process(
            entries,
            batch.Layout(tmp_path / "out"),
            DetectOptions(),
            ModelSpec(factory=ORACLE),
            lambda: contextlib.nullcontext(client),
            quiet=True,
            stop_on_error=True,
        )


def test_console_script_in_an_indexed_pod(scene_list, tmp_path):
    """The real entry point with its own LocalCluster, as the Kubernetes Job runs it."""
    out = tmp_path / "out"
    env = {**os.environ, "RAILSIGHT_MODEL_FACTORY": ORACLE, "JOB_COMPLETION_INDEX": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "service.cli", "batch", "--scenes", str(scene_list), "--out", str(out), "--workers", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (name,) = outputs(out)
    assert name.startswith("scene-") and outputs(out)[name]["summary"]["counts"]["railcar"] == 2
    assert "Traceback" not in proc.stderr
