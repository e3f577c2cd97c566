"""The scene pipeline end to end on a real multi-process Dask cluster, with the test-only model."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
import rasterio
import rasterio.io
from pyproj import Transformer
from shapely.geometry import shape

from kernels.tiling import plan_tiles
from models.cpu_bf16 import cpu_has_fast_bf16
from models.spec import ModelSpec
from service.errors import BadOption, Cancelled
from service.pipeline import DetectOptions, default_batch, detect_scene
from service.view_geometry import View, imd_text
from tests import scenes

CPU = DetectOptions(device="cpu")


def railcars(fc):
    return [f for f in fc["features"] if f["properties"]["class"] == "railcar"]


def expected_lonlat(crs, pixel_size_m, boxes):
    t = scenes.transform_for(crs, pixel_size_m)
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    pts = [t @ (c + w / 2, r + h / 2) for c, r, w, h in boxes]
    return np.array([to_ll.transform(x, y) for x, y in pts])


@pytest.fixture()
def yard(tmp_path):
    """1500 x 1100 px at 0.5 m: trains crossing the 256/512/1024 tile boundaries, a track across all."""
    img = scenes.blank(1500, 1100)
    boxes = []
    boxes += scenes.train_of_cars(img, 180, 250, 20)  # crosses x=256, 512, 768, 1024
    boxes += scenes.train_of_cars(img, 20, 509, 12)  # straddles y=512
    boxes += scenes.train_of_cars(img, 900, 1020, 15)  # crosses x=1024, near the bottom edge
    scenes.paint(img, "track", 0, 700, 1500, 3)
    return scenes.write(tmp_path / "yard.tif", img), boxes


@pytest.mark.parametrize("factory,tile,model_tile,want", [
    ("tests.oracle_model:build", None, None, 512),  # weights that name no tile: 512
    ("tests.oracle_model:build", 1024, None, 1024),  # ... or the caller's task tile
    ("tests.oracle_model:build_small_tiles", None, None, 256),  # the weights' own tile
    ("tests.oracle_model:build_small_tiles", 1024, None, 256),  # a task tile leaves the model's alone
    ("tests.oracle_model:build_small_tiles", None, 1024, 1024),  # a caller's model tile wins
])
def test_model_tile_comes_from_the_weights_unless_asked(yard, dask_client, factory, tile, model_tile, want):
    path, boxes = yard
    options = DetectOptions(device="cpu", tile=tile, model_tile=model_tile)
    fc = detect_scene(path, options, ModelSpec(factory=factory), dask_client)
    summary = fc["summary"]
    default_side = want * math.isqrt(2 * default_batch("cpu", want + 2 * summary["halo"]))  # two calls' tiles
    assert summary["tile_size"] == want and summary["task_tile"] == (tile or default_side)
    with rasterio.open(path) as src:
        assert summary["tiles"] == len(plan_tiles(src.width, src.height, want, summary["halo"]))
    assert summary["counts"]["railcar"] == len(boxes)


def test_default_batch_holds_about_the_same_pixels_whatever_the_window():
    assert [default_batch("cpu", w, "bf16") for w in (192, 320, 576, 1088)] == [22, 8, 2, 1]
    assert default_batch("cuda", 576) == 32 and default_batch("cuda", 320) == 104
    # fp32 feature maps take twice the memory: fewer tiles a call, on this CPU's own choice too
    assert [default_batch("cpu", w, "fp32") for w in (192, 320, 576, 1088)] == [17, 6, 2, 1]
    assert default_batch("cpu", 320) == (8 if cpu_has_fast_bf16() else 6)
    assert default_batch("cuda", 576, "fp32") == 32


@pytest.mark.parametrize("tile", [256, 512, 1024])
def test_seams_no_railcar_split_or_counted_twice(yard, dask_client, oracle_spec, tile):
    path, boxes = yard
    fc = detect_scene(path, DetectOptions(device="cpu", tile=tile), oracle_spec, dask_client)
    cars = railcars(fc)
    assert fc["summary"]["counts"]["railcar"] == len(boxes) == len(cars)
    # Every painted car matched by exactly one feature of the right size: whole, not split.
    want = expected_lonlat("EPSG:32652", 0.5, boxes)
    got = np.array([shape(f["geometry"]).centroid.coords[0] for f in cars])
    d = np.hypot(*(want[:, None, :] - got[None, :, :]).transpose(2, 0, 1))
    assert (d.min(axis=1) < 1e-5).all() and len(set(d.argmin(axis=1))) == len(boxes)
    lengths = sorted(f["properties"]["length_m"] for f in cars)
    assert lengths[0] == pytest.approx(14.0, abs=0.6) and lengths[-1] == pytest.approx(14.0, abs=0.6)
    tracks = [f for f in fc["features"] if f["properties"]["class"] == "track"]
    assert len(tracks) == 1, "the track must be joined across tiles into one line"
    assert tracks[0]["properties"]["length_m"] == pytest.approx(750, rel=0.02)


@pytest.mark.parametrize("crs", ["EPSG:32652", "EPSG:4326", "EPSG:3857"])
def test_crs_round_trip_lands_on_the_painted_cars(tmp_path, dask_client, oracle_spec, crs):
    img = scenes.blank(700, 600)
    boxes = scenes.train_of_cars(img, 60, 300, 8)
    path = scenes.write(tmp_path / "scene.tif", img, crs=crs)
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    got = np.array([shape(f["geometry"]).centroid.coords[0] for f in railcars(fc)])
    want = expected_lonlat(crs, 0.5, boxes)
    assert len(got) == len(want)
    d = np.hypot(*(want[:, None, :] - got[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    assert (d < 1e-5).all()  # about a metre
    assert fc["summary"]["pixel_size_m"] == pytest.approx([0.5, 0.5], abs=0.01)
    assert not fc["summary"]["resampled"]


@pytest.mark.parametrize("pixel_size", [0.3, 0.75])
def test_other_pixel_sizes_are_resampled_and_mapped_back(tmp_path, dask_client, oracle_spec, pixel_size):
    length, width, gap = (round(m / pixel_size) for m in (14.0, 3.0, 1.5))
    img = scenes.blank(round(500 / pixel_size), round(300 / pixel_size))
    boxes = scenes.train_of_cars(img, 20, 100, 10, length=length, width=width, gap=gap)
    path = scenes.write(tmp_path / "scene.tif", img, pixel_size_m=pixel_size)
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    assert fc["summary"]["resampled"]
    cars = railcars(fc)
    assert len(cars) == len(boxes)
    for f in cars:
        assert f["properties"]["length_m"] == pytest.approx(14.0, abs=1.2)
    got = np.array([shape(f["geometry"]).centroid.coords[0] for f in cars])
    want = expected_lonlat("EPSG:32652", pixel_size, boxes)
    assert (np.hypot(*(want[:, None, :] - got[None, :, :]).transpose(2, 0, 1)).min(axis=1) < 2e-5).all()


def test_nodata_is_not_detected_on_and_counts_against_valid_share(tmp_path, dask_client, oracle_spec):
    img = scenes.blank(800, 800)
    visible = scenes.train_of_cars(img, 400, 100, 5)
    scenes.train_of_cars(img, 20, 700, 5)  # painted, then hidden under the no-data wedge
    rows, cols = np.mgrid[0:800, 0:800]
    valid = ~(cols + rows < 400) & ~((rows > 600) & (cols < 500))  # a wedge and a block of no-data
    path = scenes.write(tmp_path / "wedge.tif", img, mask=valid)
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    assert len(railcars(fc)) == len(visible)
    assert fc["summary"]["valid_fraction"] == pytest.approx(valid.mean(), abs=0.002)


def test_nodata_value_without_mask(tmp_path, dask_client, oracle_spec):
    img = scenes.blank(512, 512)
    img[:, :, :256] = 0
    scenes.train_of_cars(img, 300, 200, 3)
    path = scenes.write(tmp_path / "nodata.tif", img, nodata=0)
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    assert fc["summary"]["valid_fraction"] == pytest.approx(0.5, abs=0.01)
    assert len(railcars(fc)) == 3


def test_output_follows_rfc7946(yard, dask_client, oracle_spec):
    path, _ = yard
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    ids = [f["id"] for f in fc["features"]]
    assert len(ids) == len(set(ids))
    for f in fc["features"]:
        g = shape(f["geometry"])
        assert g.is_valid
        lon, lat = g.centroid.coords[0]
        assert 130 < lon < 131 and 42 < lat < 43  # lon/lat order
        if g.geom_type == "Polygon":
            assert g.exterior.is_ccw, "exterior rings follow the right-hand rule"
        assert 0 <= f["properties"]["confidence"] <= 1
    s = fc["summary"]
    for key in ("counts", "crs", "pixel_size_m", "valid_fraction", "model", "timings"):
        assert key in s
    assert s["crs"] == "EPSG:32652" and s["model"]["name"] == "colour-oracle"


def test_bands_by_colour_interpretation_and_by_option(tmp_path, dask_client, oracle_spec):
    img = scenes.blank(400, 400)
    scenes.train_of_cars(img, 40, 100, 4)
    bgr = img[::-1].copy()  # stored blue, green, red with no colour interpretation: --bands 3,2,1 fixes it
    path = scenes.write(tmp_path / "bgr.tif", bgr)
    assert len(railcars(detect_scene(path, CPU, oracle_spec, dask_client))) == 0
    fc = detect_scene(path, DetectOptions(device="cpu", bands=(3, 2, 1)), oracle_spec, dask_client)
    assert len(railcars(fc)) == 4


def test_uint16_is_stretched_per_scene(tmp_path, dask_client, oracle_spec):
    img = scenes.blank(400, 400).astype(np.uint16) * 4
    scenes.train_of_cars(img, 40, 100, 4)
    img[img == 255] = 1020  # 10-bit-ish sensor values
    path = scenes.write(tmp_path / "u16.tif", img)
    fc = detect_scene(path, CPU, oracle_spec, dask_client)
    assert fc["summary"]["scene"]["dtype"] == "uint16"
    assert len(railcars(fc)) == 4


def test_class_raster_is_streamed_to_a_cog(yard, tmp_path, dask_client, oracle_spec):
    import rasterio  # reading the product back to check it; the pipeline itself opens rasters in one module

    path, boxes = yard
    out = tmp_path / "classes.tif"
    detect_scene(path, DetectOptions(device="cpu", class_raster=str(out)), oracle_spec, dask_client)
    with rasterio.open(out) as src:
        assert src.profile["driver"] == "GTiff" and src.block_shapes[0][0] > 1  # tiled, not strips
        labels = src.read(1)
    c, r, w, h = boxes[0]
    assert (labels[r : r + h, c : c + w] == 1).all()
    assert labels[0, 0] == 0


def test_cancel_stops_the_run(yard, dask_client, oracle_spec):
    path, _ = yard
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        detect_scene(path, CPU, oracle_spec, dask_client, cancel=cancel)


def test_model_is_loaded_once_per_worker(yard, dask_client, oracle_spec):
    path, _ = yard

    def loads():
        from service import model_plugin

        return model_plugin.loaded_models()

    before = dask_client.run(loads)  # other tests on this cluster may have loaded other models
    tiles = 0
    for tile in (256, 512):
        tiles += detect_scene(path, DetectOptions(device="cpu", tile=tile, batch_size=1), oracle_spec,
                              dask_client)["summary"]["tiles"]
    after = dask_client.run(loads)
    assert tiles >= 10 and len(after) == 2  # many tasks on each of two workers ...
    assert all(after[w] - before.get(w, 0) <= 1 for w in after)  # ... and at most one load each


def test_workers_are_warmed_up_when_the_model_loads(dask_client, oracle_spec):
    from service.model_plugin import register_model

    register_model(dask_client, oracle_spec, "cpu")

    def warm_and_ready():
        import sys

        from service import model_plugin

        return model_plugin.is_warm(oracle_spec, "cpu"), "kernels.vectorise" in sys.modules

    states = dask_client.run(warm_and_ready)
    assert len(states) == 2 and all(state == (True, True) for state in states.values())


def test_workers_are_warmed_up_at_the_scenes_model_calls_before_its_first_task(tmp_path, dask_client, oracle_spec):
    """A first call of a new shape pays for set-up (oneDNN, cuDNN, memory): the scene's own shape,
    not one tile's, is what the workers warm up at."""
    from service.pipeline import batch_size, call_shape, model_meta, model_tile

    img = scenes.blank(300, 200)
    scenes.train_of_cars(img, 40, 80, 3)
    path = scenes.write(tmp_path / "cars.tif", img)
    options = DetectOptions(device="cpu", precision="fp32", batch_size=3)
    meta = model_meta(oracle_spec)
    calls = call_shape(options, meta, batch_size(options, meta, "cpu"))
    assert (calls.batch, calls.window_px, calls.precision) == (3, model_tile(options, meta) + 2 * meta.halo_px, "fp32")

    def warm_at(shape):
        from service import model_plugin

        return model_plugin.is_warm(oracle_spec, "cpu", None, shape)

    assert not any(dask_client.run(warm_at, calls).values())
    detect_scene(path, options, oracle_spec, dask_client)
    assert list(dask_client.run(warm_at, calls).values()) == [True, True]


def test_a_failed_warm_up_is_logged_and_leaves_the_worker_running(monkeypatch, caplog):
    from service import model_plugin, tile_tasks

    def fail(spec, device, compiled=None, calls=None):
        raise RuntimeError("no memory for the warm-up batch")

    monkeypatch.setattr(tile_tasks, "warm_up", fail)
    spec = ModelSpec(factory="tests.oracle_model:build")
    model_plugin._warm_up(spec, "warm-up-test")  # a device key no other test uses
    assert "warm-up failed" in caplog.text and "no memory for the warm-up batch" in caplog.text
    assert model_plugin.is_warm(spec, "warm-up-test")  # tried once, not again on every registration


def test_large_scene_statistics_come_from_a_sparse_sample(tmp_path, monkeypatch):
    from service import rasters

    monkeypatch.setattr(rasters, "SPARSE_ABOVE_PX", 100 * 100)  # make a small scene count as large
    monkeypatch.setattr(rasters, "SPARSE_GRID", 2)  # two windows: the corners' 64 px only
    img = (scenes.blank(600, 600).astype(np.uint16) * 4)
    mask = np.zeros((600, 600), bool)
    mask[:, 300:310] = True  # valid only where the sample does not look: fall back, do not refuse
    path = scenes.write(tmp_path / "strip.tif", img, mask=mask)
    info = rasters.inspect_scene(path, model_pixel_size_m=0.5)
    assert info.stretch is not None and info.stretch[0][0] == pytest.approx(440, abs=1)
    full = scenes.write(tmp_path / "full.tif", img)
    assert rasters.inspect_scene(full, model_pixel_size_m=0.5).stretch[0][0] == pytest.approx(440, abs=1)


def test_a_large_plain_uint8_scene_is_only_checked_on_a_few_windows(tmp_path, monkeypatch):
    """No statistics and no no-data check are needed, so a 6 x 6 grid of windows is read, not 24 x
    24; the last block is among them, so a file cut short is still refused before any worker runs."""
    from rasterio.windows import Window

    from service import rasters
    from service.errors import SceneError

    monkeypatch.setattr(rasters, "SPARSE_ABOVE_PX", 100 * 100)
    seen: list[Window] = []
    real_read = rasterio.io.DatasetReader.read

    def counting_read(self, *args, window=None, **kwargs):
        if window is not None:
            seen.append(window)
        return real_read(self, *args, window=window, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting_read)
    noise = np.random.default_rng(0).integers(0, 255, (3, 1024, 1024), dtype=np.uint8)  # blocks of real size
    path = scenes.write(tmp_path / "plain.tif", noise)
    info = rasters.inspect_scene(path, model_pixel_size_m=0.5)
    assert info.stretch is None and len(seen) == rasters.CHECK_GRID**2
    assert max(w.row_off for w in seen) + 64 == 1024 and max(w.col_off for w in seen) + 64 == 1024
    seen.clear()
    rasters.inspect_scene(scenes.write(tmp_path / "masked.tif", scenes.blank(1024, 1024),
                                       mask=np.ones((1024, 1024), bool)), model_pixel_size_m=0.5)
    assert len(seen) == rasters.SPARSE_GRID**2  # a mask may hide everything: the full sample
    whole = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) * 9 // 10])
    with pytest.raises(SceneError, match="could not be read|not a raster"):
        rasters.inspect_scene(cut, model_pixel_size_m=0.5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_summary_names_the_precision_the_workers_used(yard, dask_client, oracle_spec, precision):
    path, boxes = yard
    fc = detect_scene(path, DetectOptions(device="cpu", precision=precision), oracle_spec, dask_client)
    assert fc["summary"]["precision"] == precision
    assert fc["summary"]["counts"]["railcar"] == len(boxes)


@pytest.mark.parametrize("tta", [2, 8])
def test_test_time_views_keep_the_objects_and_are_named_in_the_summary(yard, dask_client, oracle_spec, tta):
    path, boxes = yard
    plain = detect_scene(path, DetectOptions(device="cpu"), oracle_spec, dask_client)
    fc = detect_scene(path, DetectOptions(device="cpu", tta=tta), oracle_spec, dask_client)
    assert fc["summary"]["tta_views"] == tta and plain["summary"]["tta_views"] == 1
    assert fc["summary"]["counts"] == plain["summary"]["counts"] and fc["summary"]["counts"]["railcar"] == len(boxes)
    with pytest.raises(BadOption, match="takes 1, 2, 4, 8 views, got 3"):
        DetectOptions(tta=3).check()


def test_crossing_track_pieces_each_get_one_owner():
    """A piece whose midpoint lies on two joined lines (two tracks crossing there) is a tie for the
    nearest line; it must still count once, towards one line."""
    from shapely.geometry import LineString

    from kernels.vectorise import PixelLine
    from service.pieces import Pieces
    from service.scene_features import joined_tracks

    pieces = [PixelLine(LineString([(0, 0), (10, 10)]), 0.8), PixelLine(LineString([(0, 10), (10, 0)]), 0.4)]
    lines, confidence, _ = joined_tracks(Pieces.from_lines(pieces), 0.5)
    assert len(lines) == 2
    assert sorted(confidence) == pytest.approx([0.4, 0.8])


def test_joined_tracks_do_not_depend_on_the_order_pieces_arrive_in():
    """Batches finish in a different order every run; three piece ends meeting at a switch must join
    the same way whatever the order."""
    import itertools

    from shapely.geometry import LineString

    from kernels.vectorise import PixelLine
    from service.pieces import Pieces
    from service.scene_features import joined_tracks

    pieces = [PixelLine(LineString([(0, 0), (20, 0)]), 0.9), PixelLine(LineString([(21, 0.5), (40, 0)]), 0.7),
              PixelLine(LineString([(21.5, -1), (40, -12)]), 0.5), PixelLine(LineString([(40.5, 0.5), (60, 1)]), 0.6)]
    results = {
        tuple(sorted((round(conf, 6), tuple(map(tuple, np.round(line.coords, 6)))) for line, conf, _ in
                     zip(*joined_tracks(Pieces.from_lines(list(order)), 0.5), strict=True)))
        for order in itertools.permutations(pieces)
    }
    assert len(results) == 1


def test_the_models_own_confidence_floor_applies_unless_the_user_asks_for_more():
    from models.interface import ModelMeta
    from service.pipeline import confidence_floors

    meta = ModelMeta(name="m", version="1", extra={"min_confidence": {"tarped_cargo": 0.7}})
    assert confidence_floors(meta, 0.0) == {"railcar": 0.0, "tarped_cargo": 0.7, "track": 0.0}
    assert confidence_floors(meta, 0.8) == {"railcar": 0.8, "tarped_cargo": 0.8, "track": 0.8}
    assert confidence_floors(ModelMeta(name="m", version="1"), 0.3)["tarped_cargo"] == 0.3


def test_the_floors_for_the_views_run_apply_and_can_be_left_out(tmp_path, dask_client):
    """Floors are chosen per number of test-time views: the oracle's one-view floors drop every cargo
    item and track, its two-view floors keep them, and ``own_floors=False`` (what ``railsight floors``
    scores from) applies none. The summary says which floors applied."""
    img = scenes.blank(300, 200)
    scenes.paint(img, "tarped_cargo", 40, 40, 12, 10)
    scenes.paint(img, "track", 0, 150, 300, 3)
    path = scenes.write(tmp_path / "cargo.tif", img)
    spec = ModelSpec(factory="tests.oracle_model:build_view_floors")

    def run(**kw):
        fc = detect_scene(path, DetectOptions(device="cpu", **kw), spec, dask_client)
        return fc["summary"]["counts"], fc["summary"]["confidence_floors"]

    counts, floors = run()
    assert (counts["tarped_cargo"], counts["track"]) == (0, 0) and floors["tarped_cargo"] == 1.1
    counts, floors = run(tta=2)
    assert (counts["tarped_cargo"], counts["track"]) == (1, 1)
    assert floors == {"railcar": 0.0, "tarped_cargo": 0.5, "track": 0.6}
    counts, floors = run(own_floors=False)
    assert (counts["tarped_cargo"], counts["track"]) == (1, 1) and set(floors.values()) == {0.0}
    _, floors = run(tta=4, min_confidence=0.2)  # no floors for four views: the one-view ones
    assert floors == {"railcar": 0.2, "tarped_cargo": 1.1, "track": 1.1}


def test_railcar_width_trim_travels_with_the_weights(tmp_path, dask_client, oracle_spec):
    """The width trim is chosen for one set of weights and read from their metadata: the oracle's
    exact 3 m cars stay 3 m, the same model with a 0.5 m trim gives 2.5 m cars on the same centre
    (inside the 2.4-3.2 m that kernels.car_fit holds any railcar to)."""
    from models.spec import ModelSpec

    img = scenes.blank(300, 200)
    scenes.train_of_cars(img, 40, 80, 4)
    path = scenes.write(tmp_path / "cars.tif", img)
    exact = railcars(detect_scene(path, CPU, oracle_spec, dask_client))
    trimmed = railcars(detect_scene(path, CPU, ModelSpec(factory="tests.oracle_model:build_width_trimmed"),
                                    dask_client))
    assert [f["properties"]["width_m"] for f in exact] == [3.0] * 4
    assert [f["properties"]["width_m"] for f in trimmed] == [2.5] * 4
    assert [f["properties"]["length_m"] for f in trimmed] == [f["properties"]["length_m"] for f in exact]
    for a, b in zip(exact, trimmed, strict=True):
        assert shape(a["geometry"]).centroid.distance(shape(b["geometry"]).centroid) < 1e-7


def test_a_gap_between_track_pieces_is_bridged_and_says_so():
    """Two pieces of one straight track 40 m apart (80 px at 0.5 m) become one line; the bridge
    carries no confidence of its own, and its length is reported."""
    from shapely.geometry import LineString

    from kernels.vectorise import PixelLine
    from service.pieces import Pieces
    from service.scene_features import joined_tracks

    pieces = [PixelLine(LineString([(0, 0), (100, 0)]), 0.8), PixelLine(LineString([(180, 0), (300, 0)]), 0.6)]
    lines, confidence, bridged = joined_tracks(Pieces.from_lines(pieces), 0.5)
    assert len(lines) == 1 and lines[0].length == pytest.approx(300)
    assert confidence[0] == pytest.approx((100 * 0.8 + 120 * 0.6) / 220)
    assert bridged[0] == pytest.approx(80)
    # 400 px apart is 200 m at 0.5 m: too far to bridge.
    far = [pieces[0], PixelLine(LineString([(500, 0), (600, 0)]), 0.6)]
    assert len(joined_tracks(Pieces.from_lines(far), 0.5)[0]) == 2


def test_workers_and_client_hand_back_their_kept_memory(yard, dask_client, oracle_spec, tmp_path, monkeypatch):
    # Each worker before the merge; the client after the scene check, whose decoded blocks would sit
    # in its heap under the whole run.
    from service import pipeline

    marks = tmp_path / "trimmed"
    marks.mkdir()

    def trim_and_mark():  # runs on each worker (sent by value) and here: leaves a mark named by its process
        import os

        (marks / str(os.getpid())).touch()
        return True

    monkeypatch.setattr(pipeline, "release_freed_memory", trim_and_mark)
    detect_scene(yard[0], CPU, oracle_spec, dask_client)
    workers = dask_client.run(lambda: __import__("os").getpid())
    assert {p.name for p in marks.iterdir()} == {str(pid) for pid in workers.values()} | {str(os.getpid())}


def test_railcars_carry_their_consist_track_and_colour(tmp_path, dask_client, oracle_spec):
    """Six coupled cars standing on a track across two tiles and three on no track: each row is one
    consist, numbered from its left end, the six on the track's feature, each car coloured as painted."""
    img = scenes.blank(900, 400)
    scenes.paint(img, "track", 0, 200, 900, 3)
    on_track = scenes.train_of_cars(img, 400, 198, 6)  # crosses x=512; centre line y=201, the track's 200-202
    loose = scenes.train_of_cars(img, 100, 80, 3)
    fc = detect_scene(scenes.write(tmp_path / "consists.tif", img), CPU, oracle_spec, dask_client)
    tracks = [f["properties"]["id"] for f in fc["features"] if f["properties"]["class"] == "track"]
    assert len(tracks) == 1
    cars = sorted((f["properties"] for f in railcars(fc)), key=lambda p: (p["consist_cars"], p["length_m"]))
    assert len(cars) == len(on_track) + len(loose)
    by_consist: dict[str, list[dict]] = {}
    for props in railcars(fc):
        by_consist.setdefault(props["properties"]["consist_id"], []).append(props)
    rows = sorted(by_consist.values(), key=len)
    assert [len(r) for r in rows] == [3, 6]
    for row in rows:
        xs = [shape(f["geometry"]).centroid.x for f in row]
        positions = [f["properties"]["consist_position"] for f in row]
        assert [p for _, p in sorted(zip(xs, positions, strict=True))] == list(range(1, len(row) + 1))
        assert {f["properties"]["consist_cars"] for f in row} == {len(row)}
    assert {f["properties"].get("track_id") for f in rows[1]} == {tracks[0]}
    assert all("track_id" not in f["properties"] for f in rows[0])
    assert {f["properties"]["colour"] for f in railcars(fc)} == {"#ff0000"}


def test_the_merge_on_threads_gives_the_features_of_one_thread(yard, dask_client, oracle_spec, monkeypatch):
    """The merge's row-wise steps (kernels.row_threads) cut into slices of a few rows on three threads
    give the features, ids and properties one thread gives."""
    import kernels.row_threads
    import kernels.track_gaps

    def run(threads: int) -> list[dict]:
        fc = detect_scene(yard[0], DetectOptions(device="cpu", merge_threads=threads), oracle_spec, dask_client)
        return list(fc["features"])

    one = run(1)
    monkeypatch.setattr(kernels.row_threads, "MIN_ROWS", 2)
    monkeypatch.setattr(kernels.track_gaps, "CHUNK", 2)
    assert kernels.row_threads.row_slices(len(railcars({"features": one})), threads=3)[1].start > 0
    three = run(3)
    assert len(railcars({"features": one})) >= 40
    assert three == one


def test_a_scenes_view_widens_its_railcars_by_their_roofs_lean(yard, dask_client, oracle_spec):
    """A Maxar .IMD beside the scene says it was seen 30 degrees off nadir from the south: its cars,
    along x, show their roofs 2.3 m north of their feet (at a real car's 4 m), and come out that
    much wider than from straight above. A view the user gives wins over it; told to, the pipeline
    leaves it unused."""
    path, boxes = yard

    def widths(options):
        fc = detect_scene(path, options, oracle_spec, dask_client)
        assert fc["summary"]["counts"]["railcar"] == len(boxes)
        return fc["summary"]["view"], np.array([f["properties"]["width_m"] for f in railcars(fc)])

    view, plain = widths(CPU)
    assert view is None and np.all((plain >= 2.4) & (plain <= 3.2))
    path.with_suffix(".IMD").write_text(imd_text(View(30.0, 180.0)))
    view, leaned = widths(CPU)
    assert view == {"off_nadir_deg": 30.0, "satellite_azimuth_deg": 180.0, "source": "scene metadata"}
    lean = 4.0 * math.tan(math.radians(30.0))
    assert np.all((leaned >= 2.4 + lean - 0.05) & (leaned <= 3.2 + lean + 0.05)), leaned
    view, unused = widths(DetectOptions(device="cpu", view_metadata=False))
    assert view is None and unused.tolist() == plain.tolist()
    # From the east the roofs lean west, along the cars: next to nothing across them (the cars run
    # along UTM's grid east, a degree off true east at Tumangang: 2.3 m * sin(1.1 degrees)).
    view, along = widths(DetectOptions(device="cpu", off_nadir_deg=30.0, satellite_azimuth_deg=90.0))
    assert view["source"] == "request" and along.tolist() == pytest.approx(plain.tolist(), abs=0.06)
