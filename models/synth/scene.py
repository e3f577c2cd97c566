"""One synthetic scene end to end: conditions, layout, site, trains, pixels, sensor, no-data, truth.

Every stage draws from its own child of ``numpy.random.SeedSequence(seed)``, so a scene is a pure
function of its seed and arguments, and switching a stage's output off (``hide_objects``) leaves
every other stage's draws unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from shapely.affinity import affine_transform
from shapely.geometry import LineString, Polygon, box

from models.synth.burn import burn
from models.synth.cargo import Cargo
from models.synth.conditions import sample_conditions
from models.synth.geo import grid_transform_m, place, sample_location
from models.synth.labels import _shapely_params, largest_part
from models.synth.layout import build_layout
from models.synth.lean import hidden_by, lean_pixels, silhouettes
from models.synth.prims import Prim
from models.synth.railcars import Car, place_trains
from models.synth.render import paint_scene
from models.synth.sensor import apply_sensor
from models.synth.site import build_site

# 1.7.1: the view each scene was taken from written beside it, as a Maxar .IMD (io.write_scene);
# pixels and truth as 1.7.0;
# 1.7.0: 60 % of scenes seen 5-30 degrees off nadir, anything standing leaned away from the sensor
# with the side facing it showing, and labelled as it shows (lean); warehouses that a curved yard's
# tracks would run through (1.5 % of sites) left out; every other draw as in 1.6.0;
# 1.6.0: a fifth of the cars painted in any grey from dark to light with a faint tint (colours.wide_colour),
# ballast's and soil's colours among them; every other draw as in 1.5.0 (railcars.draw_spec);
# 1.5.0: JPEG is a real libjpeg round trip with chroma at half resolution (was a block DCT of its own
# with full-resolution chroma; see sensor.apply_sensor);
# 1.4.0: vendor sharpening (unsharp mask) in 60 % of scenes, allotment gardens and car parks beside yards;
# 1.3.0: each track's bed is a lighter or darker band than the ballast between tracks, sleepers mixed
# track by track, brighter concrete sleepers, deeper shadows (shadow depth up to 0.85);
# 1.2.0: lighter track middles (oily strip 0-60 %, was 35-75 %), concrete sleepers in 75 % of yards (60 %);
# 1.1.0: empty yards, buildings beside the tracks, wider ballast beds; 1.0.1: palette draws no longer
# depend on dict ids
ENGINE_VERSION = "1.7.1"
# An object stays in the truth when at least this share of its footprint is visible; cut-off
# slivers are still labelled as class pixels, but not counted.
MIN_VISIBLE_SHARE = 0.25
# Metres of track one parked car needs, for sizing a yard that must hold ``min_railcars``.
METRES_PER_CAR = 16.0


@dataclass
class SyntheticScene:
    image: np.ndarray  # (3, H, W) uint8 RGB
    valid: np.ndarray  # (H, W) bool, False on no-data edges
    transform: Affine  # pixel -> CRS (north-up)
    crs: str
    pixel_size_m: float
    objects: list[dict]  # id, class, polygon (visible part, CRS) [+ footprint, kind, length_m, ...]
    tracks: list  # shapely LineStrings (centre lines) in CRS units
    conditions: dict
    local_to_crs: Affine = field(default_factory=Affine.identity)  # local metres -> CRS
    valid_area: Polygon | None = None  # CRS; None when the whole grid is valid
    partial: list[dict] = field(default_factory=list)  # painted objects too cut off to count


def _nodata_area(rng: np.random.Generator, half: float) -> Polygon:
    """A no-data wedge or strip cutting into the scene from one side or corner (local metres)."""
    big = box(-3 * half, -3 * half, 3 * half, 3 * half)
    angle = float(rng.uniform(0, 2 * math.pi))
    nx, ny = math.cos(angle), math.sin(angle)
    # the half plane n . x > c; n . x spans +-reach over the scene, cut 3..30 % of that span
    reach = half * (abs(nx) + abs(ny))
    c = reach * (1 - 2 * float(rng.uniform(0.03, 0.3)))
    far = 4 * half
    px, py = nx * c, ny * c
    tx, ty = -ny * far, nx * far
    plane = Polygon([(px + tx, py + ty), (px - tx, py - ty), (px - tx + nx * far, py - ty + ny * far),
                     (px + tx + nx * far, py + ty + ny * far)])  # fmt: skip
    return plane.intersection(big)


def _to_crs(geom, local_to_crs: Affine):
    return affine_transform(geom, _shapely_params(local_to_crs))


def _lines(geom) -> list[LineString]:
    if geom.is_empty:
        return []
    if geom.geom_type == "LineString":
        return [geom]
    return [g for part in getattr(geom, "geoms", []) for g in _lines(part)]


def render_scene(
    seed: int,
    *,
    size_px: int = 1024,
    pixel_size_m: float | None = None,
    crs: str | None = None,
    min_railcars: int = 0,
    **overrides,
) -> SyntheticScene:
    """Render one scene, deterministic in ``seed`` and the arguments.

    ``pixel_size_m`` None draws 0.25-1.0 m; ``crs`` None uses the UTM zone of the drawn location
    (EPSG:4326, EPSG:3857 or any EPSG code may be asked for); ``min_railcars`` sizes the yard and
    fills its tracks until at least that many cars stand in the scene (ValueError if they cannot
    fit). ``overrides`` fix any key of the conditions (season, haze, sun_elevation_deg, gauge,
    electrified, curved, occupancy, n_tracks, nodata, ...); ``clean=True`` switches sensor effects
    off and ``hide_objects=True`` paints no railcars or cargo (for tests), leaving all else equal.
    """
    if size_px < 16:
        raise ValueError(f"size_px must be at least 16, got {size_px}")
    if pixel_size_m is not None and not 0.05 <= pixel_size_m <= 5.0:
        raise ValueError(f"pixel_size_m must be in 0.05..5 m, got {pixel_size_m}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(8)]
    r_cond, r_place, r_layout, r_site, r_cars, r_paint, r_sensor, r_nodata = streams
    cond = sample_conditions(r_cond, pixel_size_m, overrides)
    p = float(cond["pixel_size_m"])
    extent = size_px * p
    half = extent / 2
    lon, lat = sample_location(r_place, crs)
    placement = place(lon, lat, crs)

    nodata = _nodata_area(r_nodata, half) if cond["nodata"] else None
    scene_box = box(-half, -half, half, half)
    visible = scene_box.difference(nodata) if nodata is not None else scene_box

    min_tracks = 0
    if min_railcars > 0:
        min_tracks = math.ceil(min_railcars * METRES_PER_CAR / (0.6 * extent)) + 1
    for _attempt in range(6):
        layout = build_layout(r_layout, extent, cond, min_tracks)
        site = build_site(r_site, layout, cond, extent)
        obstacles = list(layout.platforms) + site.solid[1:]
        cars = place_trains(r_cars, layout.tracks, cond, extent, obstacles, min_railcars, visible)
        centres = np.array([(c.cx, c.cy) for c in cars]).reshape(-1, 2)
        if int(shapely.contains_xy(visible, centres[:, 0], centres[:, 1]).sum()) >= min_railcars:
            break
        min_tracks = max(min_tracks + 4, int(min_tracks * 1.5))
    else:
        raise ValueError(f"could not fit {min_railcars} railcars in a {extent:.0f} m scene; use a larger size")

    prims = list(site.prims)
    if not cond["hide_objects"]:
        prims += [q for c in site.cargo for q in c.prims]
        prims += [q for c in cars for q in c.prims]
    prims += site.overhead
    surfaces = list(_surfaces(layout, site))
    transform_m = grid_transform_m(size_px, p)
    shape = (size_px, size_px)
    rgb, _ = paint_scene(r_paint, shape, transform_m, p, cond, layout, surfaces, prims)
    image = apply_sensor(rgb, cond, r_sensor)
    valid = np.ones(shape, dtype=bool)
    if nodata is not None and not nodata.is_empty:
        valid = burn([(nodata, 1)], shape, transform_m, dtype="uint8") == 0
        image[:, ~valid] = 0

    l2c = placement.local_to_crs
    objects, partial = _truth(cars, site.cargo, visible, l2c, _shown(cars, site, cond, p))
    tracks = [
        _to_crs(line, l2c) for t in layout.tracks for line in _lines(t.line.intersection(visible)) if line.length >= 2.0
    ]
    cond = dict(cond)
    cond.update(
        crs=placement.crs, lon=lon, lat=lat, seed=int(seed), size_px=int(size_px), engine_version=ENGINE_VERSION,
        n_railcars=sum(o["class"] == "railcar" for o in objects),
        n_tarped_cargo=sum(o["class"] == "tarped_cargo" for o in objects),
        valid_share=float(valid.mean()),
    )  # fmt: skip
    return SyntheticScene(
        image=image,
        valid=valid,
        transform=l2c @ transform_m,
        crs=placement.crs,
        pixel_size_m=p,
        objects=objects,
        tracks=tracks,
        conditions=cond,
        local_to_crs=l2c,
        valid_area=_to_crs(visible, l2c) if nodata is not None else None,
        partial=partial,
    )


def _surfaces(layout, site):
    from models.synth.prims import Surface

    yield from site.surfaces
    for path in layout.paths:
        yield Surface(path, "gravel")
    yield Surface(layout.ballast, "ballast")
    for plat in layout.platforms:
        yield Surface(plat, "platform")


def _shown(cars: list[Car], site, cond: dict, p: float) -> tuple[list[Polygon], list[Polygon]] | None:
    """Where the scene is seen off nadir (``models.synth.lean``), what the image shows of each car
    and then each cargo item (its leaned silhouette less what taller buildings, trees and masts
    hide), and where its roof shows (its footprint moved by the lean of its height: the cores are
    drawn from it). None from straight above, where both are its footprint."""
    if not cond.get("off_nadir_deg"):
        return None
    parts = [c.prims or [Prim(c.cx, c.cy, c.angle, c.length, c.width, (0, 0, 0), height=c.height)] for c in cars]
    parts += [g.prims or [Prim(g.polygon.centroid.x, g.polygon.centroid.y, 0.0, 0.0, 0.0, (0, 0, 0), shape=g.polygon)]
              for g in site.cargo]
    heights = [c.height for c in cars] + [max((q.height for q in prims), default=0.0) for prims in parts[len(cars):]]
    shown = hidden_by(silhouettes(parts, cond, p), heights, site.prims + site.overhead, cond, p)
    roofs = []
    for src, h in zip([*cars, *site.cargo], heights, strict=True):
        cols, rows = lean_pixels(cond, p, h)
        roofs.append(shapely.affinity.translate(src.polygon, cols * p, -rows * p))
    return shown, roofs


def _truth(cars: list[Car], cargo: list[Cargo], visible: Polygon, l2c: Affine,
           shown: tuple[list[Polygon], list[Polygon]] | None = None) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """Counted objects (at least MIN_VISIBLE_SHARE of the footprint visible) with their visible
    polygon and full footprint in the CRS, and the painted slivers that are not counted. ``shown``:
    what the image shows of each car, then each cargo item, and where its roof shows, where those
    are not its footprint (``_shown``); the records then carry the roof too."""
    sources = [("railcar", c) for c in cars] + [("tarped_cargo", g) for g in cargo]
    if not sources:
        return [], []
    footprints = np.array(shown[0] if shown is not None else [src.polygon for _, src in sources], dtype=object)
    inside = shapely.contains_properly(visible, footprints)
    seen = footprints.copy()
    cut = np.nonzero(~inside)[0]
    if cut.size:
        seen[cut] = shapely.intersection(footprints[cut], visible)
    area = shapely.area(footprints)
    share = np.where(area > 0, shapely.area(seen) / np.maximum(area, 1e-9), 0.0)
    params = _shapely_params(l2c)
    objects: list[dict] = []
    partial: list[dict] = []
    for j in np.nonzero(share > 0)[0]:
        cls, src = sources[j]
        record = {"class": cls, "polygon": _to_crs(largest_part(seen[j]), l2c) if not inside[j] else None,
                  "footprint": footprints[j]}  # fmt: skip
        if shown is not None:
            record["roof"] = shown[1][j]
        if share[j] < MIN_VISIBLE_SHARE:
            partial.append(record)
            continue
        record["id"] = len(objects) + 1
        record["area_m2"] = round(float(area[j]), 2)
        if isinstance(src, Car):
            record.update(kind=src.kind, length_m=round(src.length, 2), width_m=round(src.width, 2),
                          heading_deg=round(src.heading_deg, 1))  # fmt: skip
        objects.append(record)
    # footprints, roofs (and whole visible polygons) to the CRS in one vectorised pass
    records = objects + partial
    keys = ["footprint", "roof"] if shown is not None else ["footprint"]
    moved = shapely.transform(np.array([r[k] for r in records for k in keys], dtype=object),
                              lambda xy: xy @ np.array([[params[0], params[2]], [params[1], params[3]]])
                              + np.array([params[4], params[5]])).reshape(-1, len(keys))  # fmt: skip
    for r, geoms in zip(records, moved, strict=True):
        r.update(zip(keys, geoms, strict=True))
        if r["polygon"] is None:  # a mast's leaning pole across a car parts what shows of it
            r["polygon"] = largest_part(r["footprint"])
    return objects, partial
