"""Labels on any grid: semantic classes, object cores and instance ids, rasterised from the scene's
geometry with the same pixel-centre rule the painter uses.

Cores (see ``models.interface``): an object's footprint shrunk along its long axis by
``min(1.5 m, 30 % of its length)`` at each end and across by ``min(1.5 m, 30 % of its width)`` at
each side, so a 14 x 2.8 m railcar has an 11 x 1.1 m core and coupled cars 1 m apart have cores
4 m apart; small cargo keeps a core. Track pixels are a band ``TRACK_BAND_M`` wide around each
centre line. Where a core is thinner than a pixel and burns nothing, the object's pixel nearest
its core's centre is set, so every visible object has a core.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from shapely.affinity import affine_transform
from shapely.geometry import Polygon

from models.interface import CLASS_INDEX, OBJECT_CLASSES
from models.synth.burn import burn

TRACK_BAND_M = 1.5
CORE_END_M = 1.5
CORE_SHARE = 0.3


def _shapely_params(t: Affine) -> list[float]:
    return [t.a, t.b, t.d, t.e, t.c, t.f]


def to_metres(geom, local_to_crs: Affine):
    return affine_transform(geom, _shapely_params(~local_to_crs))


def _axes(poly: Polygon) -> tuple[np.ndarray, float, float, float]:
    """Centre, long-axis angle, length and width of the minimum rotated rectangle."""
    rect = poly.minimum_rotated_rectangle
    pts = np.asarray(rect.exterior.coords)[:4]
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    l1, l2 = float(np.hypot(*e1)), float(np.hypot(*e2))
    long_edge = e1 if l1 >= l2 else e2
    return pts.mean(axis=0), math.atan2(long_edge[1], long_edge[0]), max(l1, l2), min(l1, l2)


def core_polygon(poly: Polygon) -> Polygon:
    """The core of a footprint in metres (see the module docstring); never empty for a non-empty
    footprint."""
    if poly.is_empty:
        return poly
    centre, angle, length, width = _axes(poly)
    end = min(CORE_END_M, CORE_SHARE * length)
    side = min(CORE_END_M, CORE_SHARE * width)
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2 - end, width / 2 - side
    inner = Polygon([(centre[0] + c * a - s * b, centre[1] + s * a + c * b)
                     for a, b in ((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw))])  # fmt: skip
    core = poly.buffer(-side, join_style="mitre").intersection(inner)
    if core.is_empty or core.area < 1e-6:
        core = poly.intersection(inner)
    if core.is_empty or core.area < 1e-6:
        core = poly.representative_point().buffer(0.05)
    if core.geom_type != "Polygon":
        parts = [g for g in getattr(core, "geoms", []) if g.geom_type == "Polygon"]
        core = max(parts, key=lambda g: g.area) if parts else poly.representative_point().buffer(0.05)
    return core


def core_polygons(polys) -> np.ndarray:
    """``core_polygon`` of many footprints: boxes (four corners, equal to their minimum rotated
    rectangle, like every railcar) in one vectorised pass, anything else one by one."""
    polys = np.asarray(polys, dtype=object)
    out = np.empty(len(polys), dtype=object)
    if not len(polys):
        return out
    boxes = (shapely.get_num_coordinates(polys) == 5) & (shapely.get_num_interior_rings(polys) == 0)
    idx = np.flatnonzero(boxes)
    if idx.size:
        pts = shapely.get_coordinates(polys[idx]).reshape(-1, 5, 2)[:, :4]
        e1, e2 = pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 1]
        # a box: opposite edges equal and adjacent edges perpendicular
        square = np.abs(np.sum(e1 * e2, axis=1)) < 1e-6 * (np.hypot(*e1.T) * np.hypot(*e2.T) + 1e-12)
        closed = np.all(np.abs(pts[:, 0] + e1 + e2 - pts[:, 3] - e1) < 1e-6 * (1 + np.abs(pts[:, 2])), axis=1)
        l1, l2 = np.hypot(*e1.T), np.hypot(*e2.T)
        u = np.where((l1 >= l2)[:, None], e1 / l1[:, None].clip(1e-12), e2 / l2[:, None].clip(1e-12))
        v = np.column_stack([-u[:, 1], u[:, 0]])
        length, width = np.maximum(l1, l2), np.minimum(l1, l2)
        hl = length / 2 - np.minimum(CORE_END_M, CORE_SHARE * length)
        hw = width / 2 - np.minimum(CORE_END_M, CORE_SHARE * width)
        centre = pts.mean(axis=1)
        signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
        corners = (centre[:, None, :] + signs[None, :, :1] * (hl[:, None, None] * u[:, None, :])
                   + signs[None, :, 1:] * (hw[:, None, None] * v[:, None, :]))  # fmt: skip
        inner = shapely.polygons(corners)
        good = square & closed & (width > 0)
        out[idx[good]] = inner[good]
        boxes[idx[~good]] = False
    for j in np.flatnonzero(~boxes):
        out[j] = core_polygon(polys[j])
    return out


def _many_to_metres(geoms, local_to_crs: Affine) -> np.ndarray:
    t = ~local_to_crs
    m = np.array([[t.a, t.d], [t.b, t.e]])
    off = np.array([t.c, t.f])
    return shapely.transform(np.asarray(geoms, dtype=object), lambda xy: xy @ m + off)


def rasterize_labels(scene, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semantic (H, W) uint8 in SEMANTIC_CLASSES order, cores (2, H, W) bool in OBJECT_CLASSES
    order, instances (H, W) int32 (object id, 0 none) for ``scene`` on the grid ``transform`` (in
    the scene's CRS) of ``shape``. Pixels outside the scene's valid area are background."""
    h, w = shape
    transform_m = ~scene.local_to_crs @ transform
    cores = np.zeros((len(OBJECT_CLASSES), h, w), dtype=bool)
    objects = scene.objects
    ids = np.array([o["id"] for o in objects], dtype=np.int64)
    classes = np.array([o["class"] for o in objects])
    feet = _many_to_metres([o.get("footprint", o["polygon"]) for o in objects], scene.local_to_crs)
    part_feet = _many_to_metres([o.get("footprint", o["polygon"]) for o in scene.partial], scene.local_to_crs)
    part_classes = [o["class"] for o in scene.partial]
    lines = _many_to_metres(scene.tracks, scene.local_to_crs)
    bands = shapely.buffer(lines, TRACK_BAND_M / 2, cap_style="flat") if len(lines) else []
    shapes = [(b, CLASS_INDEX["track"]) for b in bands]
    for cls in ("tarped_cargo", "railcar"):
        shapes += [(g, CLASS_INDEX[cls]) for g, c in zip(part_feet, part_classes, strict=True) if c == cls]
        shapes += [(g, CLASS_INDEX[cls]) for g in feet[classes == cls]]
    semantic = burn(shapes, shape, transform_m, dtype="uint8")
    instances = burn(zip(feet, ids.tolist(), strict=True), shape, transform_m)
    valid = np.ones(shape, dtype=bool)
    if scene.valid_area is not None:
        area_m = to_metres(scene.valid_area, scene.local_to_crs)
        valid = burn([(area_m, 1)], shape, transform_m, dtype="uint8") > 0
        semantic[~valid] = 0
        instances[~valid] = 0
    core_geoms = _cores(objects, feet, scene.local_to_crs)
    for k, cls in enumerate(OBJECT_CLASSES):
        sel = np.flatnonzero(classes == cls)
        if not sel.size:
            continue
        core_ids = burn(zip(core_geoms[sel], ids[sel].tolist(), strict=True), shape, transform_m)
        core_ids[~valid] = 0
        _ensure_cores(core_ids, instances, ids[sel], feet[sel], core_geoms[sel], transform_m)
        cores[k] = core_ids > 0
    return semantic, cores, instances


def largest_part(geom):
    """A polygon as it is, or of a multi-part geometry its largest polygon (empty if it holds none)."""
    if geom.is_empty or geom.geom_type == "Polygon":
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon"]
    return max(parts, key=lambda g: g.area) if parts else Polygon()


def _cores(objects: list[dict], feet: np.ndarray, local_to_crs: Affine) -> np.ndarray:
    """Each object's core in metres: of its footprint, or where the scene is seen off nadir
    (``models.synth.lean``), of its roof within what shows of it: the silhouette of a car and its
    load, leaned, is no rectangle, and shrunk as one it can come apart."""
    roofs = [j for j, o in enumerate(objects) if o.get("roof") is not None]
    if not roofs:
        return core_polygons(feet)
    basis = feet.copy()
    basis[roofs] = _many_to_metres([objects[j]["roof"] for j in roofs], local_to_crs)
    cores = core_polygons(basis)
    shown = shapely.intersection(cores[roofs], feet[roofs])
    shown = np.array([largest_part(g) for g in shown], dtype=object)  # a mast's pole across a car
    hidden = shapely.is_empty(shown) | (shapely.area(shown) < 1e-6)
    cores[roofs] = np.where(hidden, core_polygons(feet[roofs]), shown)
    return cores


def _ensure_cores(core_ids, instances, ids, feet, core_geoms, transform_m: Affine) -> None:
    """Give every object that has pixels but no core pixel one core pixel: its pixel nearest to the
    centre of its core."""
    present = np.isin(ids, np.unique(core_ids))
    missing = np.flatnonzero(~present)
    if not missing.size:
        return
    inv = ~transform_m
    h, w = instances.shape
    for j in missing:
        oid = int(ids[j])
        # search the object's bounding window only
        minx, miny, maxx, maxy = feet[j].bounds
        cols, rows = zip(*(inv @ xy for xy in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy))), strict=True)
        r0, r1 = max(int(min(rows)) - 1, 0), min(int(max(rows)) + 2, h)
        c0, c1 = max(int(min(cols)) - 1, 0), min(int(max(cols)) + 2, w)
        if r1 <= r0 or c1 <= c0:
            continue
        rr, cc = np.nonzero(instances[r0:r1, c0:c1] == oid)
        if rr.size == 0:
            continue
        rr, cc = rr + r0, cc + c0
        centre = core_geoms[j].centroid
        col, row = inv @ (centre.x, centre.y)
        k = int(np.argmin((rr + 0.5 - row) ** 2 + (cc + 0.5 - col) ** 2))
        core_ids[rr[k], cc[k]] = oid
