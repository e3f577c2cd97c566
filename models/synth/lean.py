"""Off-nadir lean: a yard seen by a satellite looking down at an angle, drawn over the nadir render.

From ``off_nadir_deg`` off the vertical, a point ``h`` metres up shows ``h * tan(off_nadir_deg)``
beyond its foot, towards ``lean_azimuth_deg`` (away from the sensor). So a 4 m car seen from 25
degrees has its roof 1.9 m beside its footprint, and between the two the side facing the sensor
shows. Real satellite scenes are mostly taken 5-30 degrees off nadir; the engine drew every scene
from straight above until 1.7.0.

Each standing prim is swept from its footprint to its roof (the convex hull of the two: the side
walls), then its roof is painted there as the nadir render drew it, shading, dirt and the shadows
on it included. Prims go from the lowest to the highest, so a taller one hides what lies behind
it. Ground and cast shadows stay where they are: they lie on the ground. The lean is a whole number
of pixels, so a roof's pixels are exactly its footprint's moved.

An object's label is what shows of it: the union of its prims' sweeps (``silhouettes``), less
what taller prims of the site (buildings, trees, masts) hide of it.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import Polygon

from models.synth import shading
from models.synth.burn import burn
from models.synth.noise import ValueNoise
from models.synth.prims import Prim, box_corners
from service.view_geometry import View

# Prims lower than this do not lean visibly (road markings, rails): they stay as drawn.
MIN_HEIGHT_M = 0.3


def satellite_view(cond: dict) -> View:
    """The view of a scene drawn under ``cond``, as a satellite product records it: the satellite
    lies opposite the lean."""
    lean = float(cond.get("lean_azimuth_deg") or 0.0)
    return View(float(cond.get("off_nadir_deg") or 0.0), (lean + 180.0) % 360.0, "scene metadata")


def lean_pixels(cond: dict, p: float, height: float) -> tuple[int, int]:
    """Whole pixels (columns east, rows south) that a point ``height`` metres up shows beyond its foot."""
    off = float(cond.get("off_nadir_deg") or 0.0)
    if off <= 0.0 or height < MIN_HEIGHT_M:
        return 0, 0
    reach = height * math.tan(math.radians(off)) / p
    az = math.radians(float(cond.get("lean_azimuth_deg") or 0.0))
    return round(reach * math.sin(az)), round(-reach * math.cos(az))


def _offsets(cond: dict, p: float, heights: list[float]) -> np.ndarray:
    """(N, 2) local metres (east, north) that points at ``heights`` show moved by."""
    px = np.array([lean_pixels(cond, p, h) for h in heights], dtype=np.float64).reshape(-1, 2)
    return px * (p, -p)  # columns run east, rows south


def outlines(prims: list[Prim]) -> np.ndarray:
    """``q.polygon`` of every prim, the boxes built in one vectorised call (one by one they were a
    quarter of the lean's time)."""
    out = np.empty(len(prims), dtype=object)
    boxes = [i for i, q in enumerate(prims) if q.shape is None]
    for i in set(range(len(prims))) - set(boxes):
        out[i] = prims[i].shape
    if boxes:
        cx, cy, angle, hl, hw = np.array([(q.cx, q.cy, q.angle, q.length / 2, q.width / 2)
                                          for q in (prims[i] for i in boxes)]).T  # fmt: skip
        out[boxes] = shapely.polygons(box_corners(cx, cy, np.cos(angle), np.sin(angle), hl, hw))
    return out


def sweeps(prims: list[Prim], cond: dict, p: float) -> np.ndarray:
    """Each prim's outline swept from where its foot shows to where its top shows (the convex hull
    of the two: its side walls and its roof), all in one vectorised pass; a prim that does not lean
    keeps its outline."""
    shapes = outlines(prims)
    low = _offsets(cond, p, [q.base for q in prims])
    high = _offsets(cond, p, [q.height for q in prims])
    moving = np.flatnonzero(low.any(axis=1) | high.any(axis=1))
    out = shapes.copy()
    if moving.size:
        coords, index = shapely.get_coordinates(shapes[moving], return_index=True)
        points = np.concatenate([coords + low[moving][index], coords + high[moving][index]])
        which = np.concatenate([index, index])
        order = np.argsort(which, kind="stable")
        out[moving] = shapely.convex_hull(shapely.multipoints(points[order], indices=which[order]))
    return out


def silhouettes(objects: list[list[Prim]], cond: dict, p: float) -> list[Polygon]:
    """What shows of each object made of its ``prims``, leaned: its prims' sweeps joined."""
    flat = [q for prims in objects for q in prims]
    swept = sweeps(flat, cond, p) if flat else np.zeros(0, dtype=object)
    ends = np.cumsum([len(prims) for prims in objects])
    return [swept[e - len(prims)] if len(prims) == 1 else shapely.union_all(swept[e - len(prims) : e])
            for prims, e in zip(objects, ends.tolist(), strict=True)]  # fmt: skip


def hidden_by(objects: list[Polygon], heights: list[float], site: list[Prim], cond: dict, p: float) -> list[Polygon]:
    """Each object's silhouette less what taller ``site`` prims' sweeps cover of it (they are painted
    later, over it)."""
    tall = [q for q in site if q.height >= MIN_HEIGHT_M and not q.floating]
    if not tall or not objects:
        return objects
    swept = sweeps(tall, cond, p)
    tall_h = np.array([q.height for q in tall])
    tree = shapely.STRtree(swept)
    out = list(objects)
    for j, (poly, h) in enumerate(zip(objects, heights, strict=True)):
        over = [k for k in tree.query(poly, predicate="intersects") if tall_h[k] > h]
        if over:
            out[j] = shapely.difference(poly, shapely.union_all(swept[over]))
    return out


def lean_prims(rgb: np.ndarray, prims: list[Prim], transform_m: Affine, p: float, cond: dict,
               noise: ValueNoise) -> None:
    """Redraw the standing ``prims`` of a nadir render ``rgb`` (3, H, W) leaned, in place."""
    standing = sorted((q for q in prims if not q.floating), key=lambda q: q.height)
    top = np.array([lean_pixels(cond, p, q.height) for q in standing], dtype=np.int64).reshape(-1, 2)
    keep = np.flatnonzero(top.any(axis=1))
    if not keep.size:
        return
    moved = [standing[i] for i in keep.tolist()]
    top = top[keep]
    walls = sweeps(moved, cond, p)
    feet = outlines(moved)
    _, index = shapely.get_coordinates(feet, return_index=True)
    roofs = shapely.transform(feet, lambda xy: xy + (top * (p, -p))[index])
    # Painted in one call, lowest first, each prim's walls and then its roof over them.
    order = np.arange(len(moved))
    values = np.column_stack([2 * order + 1, 2 * order + 2]).ravel().tolist()
    shapes = zip(np.column_stack([walls, roofs]).ravel(), values, strict=True)
    ids = burn(shapes, rgb.shape[1:], transform_m)
    rr, cc = np.nonzero(ids)
    if rr.size == 0:
        return
    k = (ids[rr, cc] - 1) // 2
    src_r, src_c = rr - top[k, 1], cc - top[k, 0]
    h, w = ids.shape
    roof = ((ids[rr, cc] - 1) % 2 == 1) & (src_r >= 0) & (src_r < h) & (src_c >= 0) & (src_c < w)
    nadir = rgb[:, src_r[roof], src_c[roof]]
    # The side facing the sensor, lit by the sun as a wall facing that way.
    az = math.radians(float(cond.get("lean_azimuth_deg") or 0.0))
    sun = shading.sun_vector(cond["sun_elevation_deg"], cond["sun_azimuth_deg"])
    light = float(shading.lambert(-math.sin(az), -math.cos(az), 0.0, sun, ambient=0.45))
    colour = np.array([q.colour for q in moved], np.float32)[k]
    dirt = np.array([q.dirt for q in moved], np.float32)[k]
    wall = colour * (light * (1 + 2 * dirt * noise.at(rr, cc)))[:, None]
    rgb[:, rr, cc] = np.clip(wall, 0.0, 1.2).T
    rgb[:, rr[roof], cc[roof]] = nadir
