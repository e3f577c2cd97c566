"""The synthetic data engine: labels match pixels, cores, determinism, ranges, CRSs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from models.interface import CLASS_INDEX
from models.synth import core_polygon, rasterize_labels, render_scene, truth_geojson
from models.synth.conditions import PIXEL_SIZE_RANGE_M, sample_conditions
from models.synth.labels import to_metres


@pytest.fixture(scope="module", params=[0.0, 25.0], ids=["nadir", "off-nadir"])
def yard(request):
    """A small, clean (no sensor effects) scene with trains, cargo allowed and a no-data wedge,
    and the same scene with railcars and cargo left out; seen from straight above, and from 25
    degrees off nadir (models.synth.lean)."""
    kw = dict(size_px=320, pixel_size_m=0.4, min_railcars=12, clean=True, nodata=True, season="summer",
              off_nadir_deg=request.param, lean_azimuth_deg=200.0)  # fmt: skip
    return render_scene(21, **kw), render_scene(21, hide_objects=True, **kw)


def test_labels_match_pixels(yard):
    scene, empty = yard
    semantic, cores, instances = rasterize_labels(scene, scene.transform, scene.valid.shape)
    diff = scene.image.astype(int) - empty.image.astype(int)
    changed = np.abs(diff).sum(axis=0) > 0
    objects = (semantic == CLASS_INDEX["railcar"]) | (semantic == CLASS_INDEX["tarped_cargo"])
    assert (semantic == CLASS_INDEX["railcar"]).sum() > 500
    # every labelled object pixel is painted as the object (a portal beam may cross a car)
    assert (changed & objects).sum() >= 0.99 * objects.sum()
    # what changed outside the labels is only the objects' shadows: darker, never brighter
    outside = changed & ~objects
    assert (diff.sum(axis=0)[outside] < 0).all()
    # no-data: black pixels, background labels
    assert not scene.valid.all() and (scene.image[:, ~scene.valid] == 0).all()
    assert (semantic[~scene.valid] == 0).all() and (instances[~scene.valid] == 0).all()


def test_truth_has_one_polygon_per_object(yard):
    """Seen off nadir, a catenary mast's leaning pole can cross a car and part what shows of it;
    the truth still gives each object one polygon, as the output contract does."""
    scene, _ = yard
    truth = truth_geojson(scene)
    objects = [f for f in truth["features"] if f["properties"]["class"] != "track"]
    assert len(objects) == len(scene.objects) >= 12
    assert {f["geometry"]["type"] for f in objects} == {"Polygon"}


def test_cores_one_per_car_inside_footprint(yard):
    scene, _ = yard
    semantic, cores, instances = rasterize_labels(scene, scene.transform, scene.valid.shape)
    car_core, cargo_core = cores
    assert not (car_core & (semantic != CLASS_INDEX["railcar"])).any()
    assert not (cargo_core & (semantic != CLASS_INDEX["tarped_cargo"])).any()
    cars = [o["id"] for o in scene.objects if o["class"] == "railcar"]
    assert len(cars) >= 12 and len(set(cars)) == len(cars)
    ids_with_pixels = set(np.unique(instances[semantic == CLASS_INDEX["railcar"]]).tolist()) - {0}
    assert ids_with_pixels == set(cars)
    # each car's core is non-empty and is one connected blob (8-connected) that no other car shares
    blobs, n_blobs = ndimage.label(car_core, structure=np.ones((3, 3)))
    assert n_blobs == len(cars)
    for blob in range(1, n_blobs + 1):
        owners = np.unique(instances[blobs == blob])
        assert len(owners) == 1 and owners[0] in cars


def test_core_rule():
    from models.synth.prims import rect

    car = rect(0.0, 0.0, 0.3, 14.0, 2.8)
    core = core_polygon(car)
    assert core.within(car)
    assert core.area == pytest.approx((14.0 - 3.0) * (2.8 - 2 * 0.84), rel=1e-6)
    crate = rect(5.0, 5.0, 1.0, 2.0, 1.6)
    small = core_polygon(crate)
    assert not small.is_empty and small.within(crate)
    assert small.area == pytest.approx((2.0 - 1.2) * (1.6 - 0.96), rel=1e-6)


def test_deterministic_by_seed():
    a = render_scene(5, size_px=160)
    b = render_scene(5, size_px=160)
    c = render_scene(6, size_px=160)
    assert np.array_equal(a.image, b.image) and a.transform == b.transform
    assert a.conditions == b.conditions
    assert [o["polygon"].wkb for o in a.objects] == [o["polygon"].wkb for o in b.objects]
    assert not np.array_equal(a.image, c.image)


def test_pixel_size_range_and_override():
    drawn = [sample_conditions(np.random.default_rng(s))["pixel_size_m"] for s in range(300)]
    lo, hi = PIXEL_SIZE_RANGE_M
    assert lo <= min(drawn) < lo + 0.05 and hi - 0.05 < max(drawn) <= hi
    scene = render_scene(3, size_px=64)
    assert lo <= scene.pixel_size_m <= hi
    fixed = render_scene(3, size_px=64, pixel_size_m=0.6)
    assert fixed.pixel_size_m == 0.6 and fixed.conditions["pixel_size_m"] == 0.6
    assert fixed.crs.startswith("EPSG:32")
    # a UTM pixel is 0.6 ground metres up to the scale factor (under 0.1 %)
    assert abs(fixed.transform.a) == pytest.approx(0.6, rel=1e-3)


def test_overrides():
    scene = render_scene(4, size_px=64, season="snow", haze=0.3, sun_elevation_deg=20.0)
    assert scene.conditions["season"] == "snow" and scene.conditions["haze"] == 0.3
    with pytest.raises(TypeError):
        render_scene(4, size_px=64, not_a_knob=1)
    with pytest.raises(ValueError):
        render_scene(4, size_px=64, season="monsoon")


@pytest.fixture(scope="module")
def busy():
    return render_scene(8, size_px=512, pixel_size_m=0.5, min_railcars=70)


def test_many_railcars_and_real_car_sizes(busy):
    cars = [o for o in busy.objects if o["class"] == "railcar"]
    assert len(cars) >= 70
    lengths = np.array([o["length_m"] for o in cars])
    widths = np.array([o["width_m"] for o in cars])
    assert lengths.min() >= 9.0 and lengths.max() <= 23.0 and 12.0 <= np.median(lengths) <= 17.0
    assert widths.min() >= 2.4 and widths.max() <= 3.2
    assert all(0.0 <= o["heading_deg"] < 180.0 for o in cars)


def test_coupled_cars_stand_about_a_metre_apart(busy):
    cars = [o for o in busy.objects if o["class"] == "railcar"]
    centres = np.array([to_metres(o["footprint"], busy.local_to_crs).centroid.coords[0] for o in cars])
    heading = np.radians([o["heading_deg"] for o in cars])
    axis = np.column_stack([np.sin(heading), np.cos(heading)])  # compass bearing -> (east, north)
    lengths = np.array([o["length_m"] for o in cars])
    gaps = []
    for i in range(len(cars)):
        offset = centres - centres[i]
        along = offset @ axis[i]
        across = np.abs(offset @ np.array([-axis[i, 1], axis[i, 0]]))
        behind = (along > 0) & (across < 0.3)
        if behind.any():
            j = np.flatnonzero(behind)[np.argmin(along[behind])]
            gaps.append(along[j] - (lengths[i] + lengths[j]) / 2)
    gaps = np.array(gaps)
    coupled = gaps[gaps < 3.0]
    assert len(coupled) > 0.5 * len(cars)  # most cars stand in trains
    assert coupled.min() >= 0.5 and coupled.max() <= 1.5 and 0.8 <= np.median(coupled) <= 1.2


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_geographic_and_web_mercator(crs):
    scene = render_scene(9, size_px=128, pixel_size_m=0.5, crs=crs, min_railcars=3)
    assert scene.crs == crs
    t = scene.transform
    assert t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0  # north-up
    # labels on the scene grid agree with labels rasterised in the local metric frame
    semantic, _, _ = rasterize_labels(scene, scene.transform, scene.valid.shape)
    assert (semantic == CLASS_INDEX["railcar"]).sum() > 0
    truth = truth_geojson(scene)
    lon, lat = scene.conditions["lon"], scene.conditions["lat"]
    for f in truth["features"]:
        geom = f["geometry"]
        xy = np.array(geom["coordinates"][0] if geom["type"] == "Polygon" else geom["coordinates"])
        assert np.abs(xy[:, 0] - lon).max() < 0.02 and np.abs(xy[:, 1] - lat).max() < 0.02


def test_labels_on_another_grid():
    """Training resamples to 0.5 m: labels drawn on that grid keep every car and its area."""
    scene = render_scene(12, size_px=256, pixel_size_m=0.3, min_railcars=8, nodata=False)
    t = scene.transform
    scale = 0.5 / 0.3
    grid = t @ Affine.scale(scale)
    shape = (math.floor(256 / scale), math.floor(256 / scale))
    semantic, cores, instances = rasterize_labels(scene, grid, shape)
    cars = [o for o in scene.objects if o["class"] == "railcar"]
    visible = [o for o in cars if o["polygon"].area > 0.9 * o["footprint"].area]
    seen = set(np.unique(instances[cores[0]]).tolist())
    assert {o["id"] for o in visible} <= seen
    car_area = (semantic == CLASS_INDEX["railcar"]).sum() * 0.25
    truth_area = sum(to_metres(o["polygon"], scene.local_to_crs).area for o in cars)
    assert car_area == pytest.approx(truth_area, rel=0.1)


def test_truth_geojson_contract():
    scene = render_scene(13, size_px=192, pixel_size_m=0.5, min_railcars=4)
    truth = truth_geojson(scene)
    assert truth["type"] == "FeatureCollection" and "crs" not in truth
    assert truth["conditions"]["season"] == scene.conditions["season"]
    classes = {f["properties"]["class"] for f in truth["features"]}
    assert {"railcar", "track"} <= classes <= {"railcar", "tarped_cargo", "track"}
    for f in truth["features"]:
        props = f["properties"]
        assert isinstance(props["id"], int)
        if props["class"] == "railcar":
            assert {"length_m", "width_m", "heading_deg"} <= set(props)
        if f["geometry"]["type"] == "Polygon":
            ring = np.array(f["geometry"]["coordinates"][0])
            x, y = ring[:, 0], ring[:, 1]
            signed = 0.5 * np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])
            assert signed > 0  # right-hand rule: exterior ring anticlockwise
            assert x.min() >= -180 and x.max() <= 180 and y.min() >= -90 and y.max() <= 90
    assert truth["summary"]["counts"]["railcar"] == scene.conditions["n_railcars"]


def test_palette_draws_follow_the_palette_not_its_address():
    """Literal palettes are fresh dicts whose ids get reused; each draw must still use its own."""
    from models.synth.colours import PAINT, jitter, pick

    for i in range(200):
        name = ("red", "blue", "white")[i % 3]
        want_rng = np.random.default_rng(i)
        want_rng.random()  # pick draws the colour name first
        assert pick(np.random.default_rng(i), {name: 1}) == jitter(want_rng, PAINT[name])


def test_buildings_beside_the_tracks_keep_off_them():
    """Engine 1.1.0 stands warehouses right beside the outer track; none may cover a track."""
    beside = 0
    for layout, site in _sites(range(40)):
        tracks = [t.line.buffer(2.0) for t in layout.tracks]
        roofs = [p.polygon for p in site.prims if p.height >= 6.0 and p.length >= 50.0]
        for roof in roofs:
            assert not any(roof.intersects(t) for t in tracks)
        beside += sum(1 for r in roofs if min(r.distance(t) for t in tracks) < 12.0)
    assert beside > 0  # some do stand within a few metres of the ballast


def test_some_yards_stand_empty():
    occupancy = np.array([sample_conditions(np.random.default_rng(s))["occupancy"] for s in range(400)])
    assert 0.08 < (occupancy < 0.15).mean() < 0.25
    assert occupancy.min() >= 0.0 and occupancy.max() <= 0.95


def test_each_track_bed_is_a_band_of_its_own_tone():
    """Engine 1.3.0: at 0.5 m a real yard shows every track as a band about 3 m wide, lighter or
    darker than the ballast between tracks (fresh or dirty); faint rails on even ballast taught the
    model to call real empty tracks railcars."""
    from types import SimpleNamespace

    from shapely.geometry import LineString

    from models.synth.layout import Track
    from models.synth.render import _paint_tracks

    p, size = 0.5, 200
    transform = Affine(p, 0, -size * p / 2, 0, -p, size * p / 2)
    contrasts = []
    for sleeper in ("concrete", "wood"):
        tracks = [Track(LineString([(-60, v), (60, v)]), "1435", "yard", True, sleeper, False) for v in (-10, -5, 0, 5, 10)]
        rows = (size / 2 - np.array([-10, -5, 0, 5, 10]) / p).astype(int)
        for seed in range(24):
            rgb = np.full((3, size, size), 0.5, np.float32)
            layout = SimpleNamespace(tracks=tracks)
            _paint_tracks(rgb, layout, transform, p, {"season": "summer"}, np.random.default_rng(seed))
            lum = rgb.mean(axis=0)[:, 20:-20]
            bed = np.mean([lum[r - 2 : r + 3].mean() for r in rows])  # within 1.25 m of each centre line
            between = np.mean([lum[r + 5].mean() for r in rows[:-1]])  # 2.5 m off: the ballast in between
            contrasts.append(bed - between)
    contrasts = np.array(contrasts)
    assert np.median(np.abs(contrasts)) > 0.05
    assert (contrasts > 0.05).sum() >= 3 and (contrasts < -0.05).sum() >= 3  # lighter beds and darker ones


def _mean_gradient(image: np.ndarray) -> float:
    grey = image.astype(np.float32).mean(axis=0)
    return float(np.hypot(np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]).mean())


def test_sharpening_raises_local_contrast_and_is_drawn_for_most_scenes():
    """Engine 1.4.0: vendor sharpening (an unsharp mask after the noise), because the engine's
    scenes were much softer than real imagery on the model grid."""
    same = {"pixel_size_m": 0.4, "season": "summer", "blur_px": 0.6, "noise": 2.0, "jpeg_quality": None}
    soft = render_scene(11, size_px=256, sharpen=0.0, sharpen_px=0.0, **same).image
    sharp = render_scene(11, size_px=256, sharpen=1.0, sharpen_px=1.0, **same).image
    assert _mean_gradient(sharp) > 1.3 * _mean_gradient(soft)
    drawn = np.array([sample_conditions(np.random.default_rng(s))["sharpen"] for s in range(300)])
    assert 0.5 < (drawn > 0).mean() < 0.7
    assert drawn.max() <= 1.5


def _sites(seeds: range):
    """(layout, site) of a 400 m summer scene at 0.5 m for each seed."""
    from models.synth.layout import build_layout
    from models.synth.site import build_site

    for seed in seeds:
        # Conditions from a stream of their own, as render_scene draws them, so a condition the engine
        # adds does not change the layouts and sites these tests look at.
        cond = sample_conditions(np.random.default_rng([seed, 1]), 0.5, {"season": "summer"})
        rng = np.random.default_rng(seed)
        layout = build_layout(rng, 400.0, cond)
        yield layout, build_site(rng, layout, cond, 400.0)


def _site_with(monkeypatch, use: str, seeds: range):
    """Sites whose countryside is all ``use`` (the land-use draw forced), with their layouts."""
    from models.synth import site as site_module

    weights = tuple(1.0 if u == use else 0.0 for u in site_module.COUNTRY_USES)
    monkeypatch.setattr(site_module, "COUNTRY_WEIGHTS", weights)
    yield from _sites(seeds)


def _wide(polygon, metres: float) -> bool:
    ring = np.asarray(polygon.minimum_rotated_rectangle.exterior.coords)
    return bool(min(np.hypot(*(ring[1] - ring[0])), np.hypot(*(ring[2] - ring[1]))) > metres)


def test_car_parks_hold_rows_of_cars_on_asphalt_off_the_tracks(monkeypatch):
    import shapely

    parked = 0
    for layout, site in _site_with(monkeypatch, "carpark", range(6)):
        tracks = shapely.union_all([t.line.buffer(2.0) for t in layout.tracks])
        parks = [s.geometry for s in site.surfaces if s.material == "asphalt" and _wide(s.geometry, 12.0)]
        if not parks:
            continue
        asphalt = shapely.union_all(parks).buffer(0.5)  # car parks, not roads
        cars = [p.polygon for p in site.prims if p.style == "vehicle"]
        on_asphalt = [c for c in cars if asphalt.contains(c)]
        parked += len(on_asphalt)
        assert not any(c.intersects(tracks) for c in cars)
        for i, a in enumerate(on_asphalt):  # parked side by side, never on top of each other
            assert all(a.intersection(b).area < 0.05 * a.area for b in on_asphalt[i + 1 :])
    assert parked > 100


def test_allotment_gardens_are_plots_with_sheds_and_greenhouses(monkeypatch):
    plots = sheds = greenhouses = 0
    for _, site in _site_with(monkeypatch, "gardens", range(6)):
        fields = [s.geometry for s in site.surfaces if s.material == "field" and s.geometry.area < 450.0]
        plots += len(fields)
        small = [p for p in site.prims if p.height < 6.0 and p.style in ("gable", "long_ribs", "flat")]
        sheds += sum(1 for p in small if p.length * p.width <= 16.0 and p.height > 2.5)
        greenhouses += sum(1 for p in small if p.height == 2.2)
        for i, a in enumerate(fields[:200]):  # plots tile the ground without overlapping
            assert all(a.intersection(b).area < 1.0 for b in fields[i + 1 : 200])
    assert plots > 100 and sheds > 50 and greenhouses > 30


def test_the_engines_jpeg_keeps_colour_at_half_resolution_as_real_files_do():
    """Engine 1.5.0: red and blue columns one pixel wide keep their brightness stripes after the
    engine's JPEG, but not their colour: JPEG files carry colour at half resolution (4:2:0)."""
    from models.synth.sensor import apply_sensor

    clean = sample_conditions(np.random.default_rng(0), 0.5, {"clean": True})

    stripes = np.zeros((3, 64, 64), dtype=np.float32)
    stripes[0, :, 0::2] = 1.0  # red columns
    stripes[2, :, 1::2] = 1.0  # blue columns
    cond = {**clean, "jpeg_quality": 90}
    out = apply_sensor(stripes, cond, np.random.default_rng(0)).astype(np.float32)
    plain = apply_sensor(stripes, clean, np.random.default_rng(0)).astype(np.float32)
    red_step = lambda img: float(img[0, 8:-8, 8:-8:2].mean() - img[0, 8:-8, 9:-8:2].mean())  # noqa: E731
    assert red_step(plain) == pytest.approx(255.0)
    # Red minus blue is chroma, averaged over each pair of columns; what is left is their brightness
    # difference (0.299 - 0.114 of full scale, 47 levels), give or take the compression.
    assert 20.0 < red_step(out) < 90.0


def test_a_scene_seen_off_nadir_shows_each_car_leaned_away_from_the_sensor():
    """Engine 1.7.0: from 25 degrees off nadir a car's roof shows about h * tan(25) beyond its
    footprint, towards the lean azimuth, and its label (what shows of it: roof and the side facing
    the sensor) holds the footprint and reaches that far."""
    # No catenary masts: a mast's leaning pole would hide a strip of the car behind it.
    kw = dict(size_px=320, pixel_size_m=0.4, min_railcars=12, clean=True, nodata=False, season="summer",
              electrified=False)  # fmt: skip
    above = render_scene(21, off_nadir_deg=0.0, **kw)
    seen = render_scene(21, off_nadir_deg=25.0, lean_azimuth_deg=200.0, **kw)
    assert seen.conditions["off_nadir_deg"] == 25.0 and above.conditions["off_nadir_deg"] == 0.0
    cars = [(a, b) for a, b in zip(above.objects, seen.objects, strict=True) if a["class"] == "railcar"]
    assert len(cars) >= 12
    lean = np.array([math.sin(math.radians(200.0)), math.cos(math.radians(200.0))])
    reaches = []
    for a, b in cars:
        foot = to_metres(a["footprint"], above.local_to_crs)
        shown = to_metres(b["footprint"], seen.local_to_crs)
        assert shown.buffer(1e-6).contains(foot)  # the footprint is still all covered, by walls or roof
        moved = np.asarray(shown.centroid.coords[0]) - np.asarray(foot.centroid.coords[0])
        reaches.append(2 * float(moved @ lean))  # the centroid moves half the roof's lean
    # Cars are 3.3-4.6 m tall: their roofs show 1.5-2.2 m over, a whole number of 0.4 m pixels.
    assert 1.0 < np.median(reaches) < 2.6


def test_most_scenes_are_seen_off_nadir():
    from models.synth.conditions import NADIR_SHARE, OFF_NADIR_RANGE_DEG

    drawn = [sample_conditions(np.random.default_rng(s)) for s in range(400)]
    off = np.array([c["off_nadir_deg"] for c in drawn])
    assert abs((off == 0).mean() - NADIR_SHARE) < 0.08
    assert ((off == 0) | ((off >= OFF_NADIR_RANGE_DEG[0]) & (off <= OFF_NADIR_RANGE_DEG[1]))).all()
    azimuths = np.array([c["lean_azimuth_deg"] for c in drawn])
    assert azimuths.min() >= 0 and azimuths.max() < 360 and np.histogram(azimuths, 4, (0, 360))[0].min() > 60
