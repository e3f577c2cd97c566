"""Land use around the track field: hardstands with cargo, containers and trucks, warehouses, roads
with traffic, fields, houses, allotment gardens, car parks and trees.

Both sides of the yard (in yard coordinates, beyond the band the tracks occupy) get a land use:
industrial (a hardstand next to the tracks, warehouses, an access road), a road corridor, or
countryside (bands of fields, grass, houses, trees, gardens or car parks outwards). Hardstands are
packed in rows along the tracks, so nothing overlaps by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from models.synth import distractors as dx
from models.synth.cargo import Cargo, cargo_cluster
from models.synth.colours import mix
from models.synth.layout import Layout, YardFrame
from models.synth.prims import Prim, Surface


@dataclass
class Site:
    surfaces: list[Surface] = field(default_factory=list)
    prims: list[Prim] = field(default_factory=list)
    cargo: list[Cargo] = field(default_factory=list)
    solid: list[Polygon] = field(default_factory=list)  # footprints trees and cars keep off
    overhead: list[Prim] = field(default_factory=list)  # masts and portal beams, painted over everything
    view: float = 1e9  # half-size of the square (local metres) worth filling; things beyond are skipped

    def sees(self, frame: YardFrame, u0: float, u1: float, v0: float, v1: float) -> bool:
        """Does the yard-coordinate box reach into the scene (plus a margin)?"""
        x, y = frame.warp([u0, u1, u0, u1, (u0 + u1) / 2], [v0, v0, v1, v1, (v0 + v1) / 2])
        return bool(x.max() > -self.view and x.min() < self.view and y.max() > -self.view and y.min() < self.view)


def build_site(rng: np.random.Generator, layout: Layout, cond: dict, extent_m: float) -> Site:
    site = Site(view=extent_m / 2 + 30.0)
    frame, half = layout.frame, layout.half_domain
    season = cond["season"]
    lo, hi = layout.occupied_v
    # the track band itself: trees and buildings keep off
    site.solid.append(frame.area(-half, half, lo, hi))
    branches = [t.line.buffer(4.0) for t in layout.tracks if t.role == "branch"]
    for side, edge in ((1.0, hi), (-1.0, lo)):
        use = str(rng.choice(["industrial", "road", "country"], p=(0.6, 0.2, 0.2)))
        if side == layout.branch_side:  # a branch line curves away across this side: open country
            use = "country"
            site.solid += branches
        v = edge + side * float(rng.uniform(1.0, 8.0))
        if use != "country" and rng.random() < 0.3:
            v = _trackside_buildings(rng, site, frame, half, edge + side * float(rng.uniform(0.5, 3.0)), side, season)
        if use == "industrial":
            v = _industrial(rng, site, frame, half, v, side, season)
        if use in ("industrial", "road") or rng.random() < 0.4:
            v = _road(rng, site, frame, half, v + side * float(rng.uniform(2.0, 20.0)), side, cond["pixel_size_m"])
        _country(rng, site, frame, half, v, side, season, cond["pixel_size_m"])
    _yard_extras(rng, site, layout, season)
    _crossing_paths(rng, site, extent_m, cond["pixel_size_m"])
    return site


def _span(rng: np.random.Generator, half: float, min_len: float) -> tuple[float, float]:
    length = float(rng.uniform(min_len, 2 * half))
    u0 = float(rng.uniform(-half, half - length))
    return u0, u0 + length


def _industrial(rng, site: Site, frame: YardFrame, half: float, v: float, side: float, season: str) -> float:
    """A hardstand packed in rows (cargo, containers, trucks, parked cars), a warehouse behind it."""
    depth = float(rng.uniform(25.0, 110.0))
    u0, u1 = _span(rng, half, min(2 * half, 120.0))
    va, vb = sorted((v, v + side * depth))
    site.surfaces.append(Surface(frame.area(u0, u1, va, vb), "concrete", float(rng.uniform(-1, 1)),
                                 frame.angle(0.0), float(rng.choice([0.0, 5.0, 6.0]))))  # fmt: skip
    # rows from the track side outwards
    pos = v + side * float(rng.uniform(1.0, 4.0))
    limit = v + side * depth * (0.6 if rng.random() < 0.6 else 1.0)
    while side * (limit - pos) > 4.0:
        kind = str(rng.choice(["cargo", "containers", "trucks", "cars", "empty"], p=(0.45, 0.22, 0.13, 0.1, 0.1)))
        row_depth = {"cargo": rng.uniform(4.0, 14.0), "containers": rng.uniform(2.6, 13.0), "trucks": 17.5,
                     "cars": 5.0, "empty": rng.uniform(3.0, 10.0)}[kind]  # fmt: skip
        row_depth = float(min(row_depth, side * (limit - pos)))
        a, b = sorted((pos, pos + side * row_depth))
        _fill_row(rng, site, frame, u0, u1, a, b, kind, season == "snow")
        pos += side * (row_depth + float(rng.uniform(2.5, 9.0)))
    if side * (v + side * depth - limit) > 15.0:  # warehouse(s) at the back
        wa, wb = sorted((limit + side * 2.0, v + side * depth - side * 2.0))
        u = u0 + float(rng.uniform(0, 10))
        _warehouse_row(rng, site, frame, u, u1, wa, wb, (40.0, 220.0), (6.0, 40.0), season == "snow")
    site.solid.append(frame.area(u0, u1, va, vb))
    return v + side * depth


def _trackside_buildings(rng, site: Site, frame: YardFrame, half: float, v: float, side: float, season: str) -> float:
    """Goods sheds and warehouses standing right beside the outer track, their long roofs (and, with
    the sun behind them, their shadows) next to and across the ballast, as in real yards. Returns
    the ``v`` beyond them."""
    depth = float(rng.uniform(10.0, 35.0))
    va, vb = sorted((v, v + side * depth))
    u0, u1 = _span(rng, half, min(2 * half, 80.0))
    _warehouse_row(rng, site, frame, u0, u1, va, vb, (50.0, 260.0), (8.0, 60.0), season == "snow")
    return v + side * (depth + float(rng.uniform(2.0, 8.0)))


def _warehouse_row(
    rng,
    site: Site,
    frame: YardFrame,
    u: float,
    u1: float,
    va: float,
    vb: float,
    lengths: tuple[float, float],
    gaps: tuple[float, float],
    snow: bool,
) -> None:
    """Warehouses along ``u`` from ``u`` to ``u1``, filling ``va``..``vb`` across, with gaps between."""
    while u < u1 - 30.0:
        length = float(min(rng.uniform(*lengths), u1 - u))
        cx, cy, angle = frame.rigid(u + length / 2, (va + vb) / 2)
        building = dx.building(rng, cx, cy, angle, length, vb - va, "warehouse", snow)
        # A straight building beside a curved yard can swing into its track band (site.solid[0]).
        if not building[0].polygon.intersects(site.solid[0]):
            site.prims += building
            site.solid.append(frame.area(u, u + length, va, vb))
        u += length + float(rng.uniform(*gaps))


def _fill_row(rng, site: Site, frame: YardFrame, u0: float, u1: float, a: float, b: float, kind: str, snow: bool) -> None:
    u = u0 + float(rng.uniform(0.0, 10.0))
    while u < u1 - 5.0:
        seg = float(rng.uniform(8.0, 70.0))
        seg = min(seg, u1 - u)
        if not site.sees(frame, u, u + seg, a, b):
            pass
        elif kind == "cargo":
            site.cargo += cargo_cluster(rng, frame, u, u + seg, a, b, snow)
        elif kind == "containers":
            site.prims += dx.container_block(rng, frame, u, u + seg, a, b)
        elif kind == "trucks":
            for uu in np.arange(u + 2.0, u + seg - 2.0, float(rng.uniform(3.5, 5.0))):
                if rng.random() < 0.6:
                    cx, cy, angle = frame.rigid(float(uu), (a + b) / 2, math.pi / 2 + float(rng.normal(0, 0.03)))
                    site.prims += dx.truck(rng, cx, cy, angle + (math.pi if rng.random() < 0.5 else 0.0))
        elif kind == "cars":
            for uu in np.arange(u + 1.5, u + seg - 1.5, float(rng.uniform(2.4, 2.8))):
                if rng.random() < 0.7:
                    cx, cy, angle = frame.rigid(float(uu), (a + b) / 2, math.pi / 2 + float(rng.normal(0, 0.04)))
                    site.prims.append(dx.vehicle(rng, cx, cy, angle))
        u += seg + float(rng.uniform(3.0, 25.0))


def _road(rng, site: Site, frame: YardFrame, half: float, v: float, side: float, pixel_size: float) -> float:
    width = float(rng.uniform(5.5, 10.0))
    va, vb = sorted((v, v + side * width))
    site.surfaces.append(Surface(frame.area(-half, half, va, vb), "asphalt", float(rng.uniform(-1, 1))))
    if rng.random() < 0.7:  # dashed centre line, at least a pixel wide, fainter the wider it is drawn
        vc = (va + vb) / 2
        mark, tone = _marking(pixel_size)
        dash, gap = float(rng.uniform(3.0, 6.0)), float(rng.uniform(3.0, 9.0))
        for u in np.arange(-half, half, dash + gap):
            if not site.sees(frame, float(u), float(u) + dash, vc, vc):
                continue
            site.surfaces.append(Surface(frame.area(float(u), float(u) + dash, vc - mark, vc + mark), "marking", tone))
    for u in rng.uniform(-half, half, size=int(rng.poisson(half / 60))):
        if not site.sees(frame, float(u) - 8, float(u) + 8, va, vb):
            continue
        lane = (va + vb) / 2 + float(rng.choice([-1, 1])) * width / 4
        cx, cy, angle = frame.rigid(float(u), lane, float(rng.choice([0.0, math.pi])))
        if rng.random() < 0.25:
            site.prims += dx.truck(rng, cx, cy, angle)
        else:
            site.prims.append(dx.vehicle(rng, cx, cy, angle))
    site.solid.append(frame.area(-half, half, va, vb))
    return v + side * width


# Allotment gardens and car parks next to yards: grids of small sheds, greenhouses, plots and parked
# cars were the real Muttenz picture's false railcars off the tracks.
COUNTRY_USES = ("field", "houses", "grass", "trees", "gardens", "carpark")
COUNTRY_WEIGHTS = (0.29, 0.17, 0.24, 0.12, 0.1, 0.08)


def _marking(pixel_size: float) -> tuple[float, float]:
    """A painted line 0.15 m wide as a Surface can draw it: (half-width, tone). Drawn at least a
    pixel wide, so fainter the wider it is drawn (the tone is the line's share of the pixel)."""
    mark = max(0.075, 0.55 * pixel_size)
    return mark, -min(0.9, (mark - 0.075) / mark)


def _country(rng, site: Site, frame: YardFrame, half: float, v: float, side: float, season: str,
             pixel_size: float) -> None:  # fmt: skip
    """Fields, grass, a few houses and trees from ``v`` to the edge of the domain."""
    far = side * half
    blocked = dx.blocker(site.solid)
    pos = v + side * float(rng.uniform(2.0, 10.0))
    while side * (far - pos) > 10.0:
        depth = float(rng.uniform(30.0, 200.0))
        a, b = sorted((pos, pos + side * depth))
        use = str(rng.choice(COUNTRY_USES, p=COUNTRY_WEIGHTS))
        if not site.sees(frame, -half, half, a, b):
            use = "grass"
        if use == "field":
            for u0 in np.arange(-half, half, float(rng.uniform(60.0, 250.0))):
                u1 = u0 + float(rng.uniform(50.0, 240.0))
                site.surfaces.append(Surface(frame.area(float(u0), u1, a, b), "field", float(rng.uniform(-1, 1)),
                                             frame.angle(0.0) + float(rng.choice([0.0, math.pi / 2])),
                                             float(rng.uniform(1.0, 4.0))))  # fmt: skip
        elif use == "houses":
            for u in np.arange(-half, half, float(rng.uniform(18.0, 35.0))):
                if rng.random() < 0.3 or not site.sees(frame, float(u) - 10, float(u) + 10, a, b):
                    continue
                length, width = float(rng.uniform(8.0, 16.0)), float(rng.uniform(7.0, 11.0))
                cx, cy, angle = frame.rigid(float(u), (a + b) / 2 + float(rng.normal(0, depth / 6)),
                                            float(rng.choice([0.0, math.pi / 2])) + float(rng.normal(0, 0.05)))  # fmt: skip
                prims = dx.building(rng, cx, cy, angle, length, width, "house", season == "snow")
                if not blocked(prims[0].polygon):
                    site.prims += prims
                    site.solid.append(prims[0].polygon)
                if rng.random() < 0.6:
                    x, y = frame.warp(float(u) + rng.uniform(-8, 8), (a + b) / 2 + float(rng.normal(0, depth / 4)))
                    site.prims += dx.tree_cluster(rng, float(x), float(y), 4.0, season, blocked)
        elif use == "gardens":
            _gardens(rng, site, frame, half, a, b, season, blocked)
        elif use == "carpark":
            _car_park(rng, site, frame, half, a, min(b, a + 60.0), pixel_size, blocked)
        elif use == "trees":
            for _ in range(int(rng.integers(3, 15))):
                x, y = frame.warp(float(rng.uniform(-half, half)), float(rng.uniform(a, b)))
                if max(abs(float(x)), abs(float(y))) > site.view + 20:
                    continue
                site.prims += dx.tree_cluster(rng, float(x), float(y), float(rng.uniform(3.0, 12.0)), season, blocked)
        pos += side * depth


def _gardens(rng, site: Site, frame: YardFrame, half: float, a: float, b: float, season: str, blocked) -> None:
    """Allotment gardens: plots in a grid along gravel paths, each with its own cover (crop rows,
    grass, bare soil), a small shed, often a greenhouse or a tree."""
    u0, u1 = _span(rng, half, min(2 * half, 60.0))
    plot_u, plot_v = float(rng.uniform(8.0, 16.0)), float(rng.uniform(12.0, 25.0))
    path = float(rng.uniform(1.5, 3.0))
    snow = season == "snow"
    for v in np.arange(a, b - plot_v, plot_v + path):
        va, vb = float(v), float(v) + plot_v
        site.surfaces.append(Surface(frame.area(u0, u1, vb, vb + path), "gravel", float(rng.uniform(-1, 1))))
        for u in np.arange(u0, u1 - plot_u, plot_u + 0.5):
            ua, ub = float(u), float(u) + plot_u
            if not site.sees(frame, ua, ub, va, vb):
                continue
            site.surfaces.append(Surface(frame.area(ua, ub, va, vb), "field", float(rng.uniform(-1, 1)),
                                         frame.angle(0.0) + float(rng.choice([0.0, math.pi / 2])),
                                         float(rng.uniform(0.6, 1.5))))  # fmt: skip
            _garden_buildings(rng, site, frame, ua, ub, va, vb, snow, blocked)
            if rng.random() < 0.4:
                x, y = frame.warp(float(rng.uniform(ua, ub)), float(rng.uniform(va, vb)))
                site.prims.append(dx.tree(rng, float(x), float(y), season, float(rng.uniform(1.0, 3.0))))


def _garden_buildings(rng, site: Site, frame: YardFrame, ua: float, ub: float, va: float, vb: float, snow: bool,
                      blocked) -> None:  # fmt: skip
    """A plot's shed at one end and, in half the plots, a whitish greenhouse beside it."""
    if rng.random() < 0.8:
        length, width = float(rng.uniform(2.0, 4.5)), float(rng.uniform(2.0, 3.5))
        cx, cy, angle = frame.rigid(float(rng.uniform(ua + 2.5, ub - 2.5)), vb - width / 2 - 0.5,
                                    float(rng.normal(0, 0.05)))  # fmt: skip
        prims = dx.building(rng, cx, cy, angle, length, width, "shed", snow)
        if not blocked(prims[0].polygon):
            site.prims += prims
    if rng.random() < 0.5:
        length, width = float(rng.uniform(3.0, 8.0)), float(rng.uniform(2.0, 3.5))
        cx, cy, angle = frame.rigid((ua + ub) / 2, va + width / 2 + 1.0)
        glass = mix((0.8, 0.83, 0.82), (0.45, 0.5, 0.4), float(rng.uniform(0.0, 0.5)))
        site.prims.append(Prim(cx, cy, angle, length, width, glass, "long_ribs", 2.2, (0.6, 0.1, 0.0, 0.0), 0.05))


def _car_park(rng, site: Site, frame: YardFrame, half: float, a: float, b: float, pixel_size: float,
              blocked) -> None:  # fmt: skip
    """An asphalt car park: double rows of bays with white lines, most of them taken."""
    u0, u1 = _span(rng, half, min(2 * half, 40.0))
    site.surfaces.append(Surface(frame.area(u0, u1, a, b), "asphalt", float(rng.uniform(-1, 1))))
    bay, depth, aisle = float(rng.uniform(2.4, 2.7)), 5.0, float(rng.uniform(6.0, 7.0))
    occupancy = float(rng.uniform(0.4, 0.95))
    mark, tone = _marking(pixel_size)
    for v in np.arange(a + 1.0, b - 2 * depth, 2 * depth + aisle):
        for row, facing in ((float(v) + depth / 2, 0.0), (float(v) + 1.5 * depth, math.pi)):
            for u in np.arange(u0 + 1.0, u1 - bay, bay):
                if not site.sees(frame, float(u), float(u) + bay, row - depth / 2, row + depth / 2):
                    continue
                line = frame.area(float(u) - mark, float(u) + mark, row - depth / 2, row + depth / 2)
                site.surfaces.append(Surface(line, "marking", tone))
                if rng.random() < occupancy:
                    cx, cy, angle = frame.rigid(float(u) + bay / 2, row, math.pi / 2 + facing + float(rng.normal(0, 0.03)))
                    car = dx.vehicle(rng, cx, cy, angle)
                    if car.length < depth - 0.2 and not blocked(car.polygon):  # vans would reach the next row
                        site.prims.append(car)
    site.solid.append(frame.area(u0, u1, a, b))


def _crossing_paths(rng, site: Site, extent_m: float, pixel_size: float) -> None:
    """Roads and dirt tracks at any angle across the countryside, stopping at the yard, hardstands
    and buildings (no level crossings)."""
    half = extent_m / 2
    keep_out = shapely.union_all(site.solid).buffer(2.0, quad_segs=2)
    for _ in range(int(rng.poisson(1.2))):
        angle = float(rng.uniform(0, math.pi))
        offset = float(rng.uniform(-half, half))
        c, s = math.cos(angle), math.sin(angle)
        far = 2 * extent_m
        line = LineString([(-s * offset - c * far, c * offset - s * far), (-s * offset + c * far, c * offset + s * far)])
        if rng.random() < 0.5:  # a dirt or gravel track, gently wandering
            pts = np.asarray(shapely.segmentize(line, 40.0).coords)
            pts += rng.normal(0.0, 4.0, size=pts.shape) * np.array([-s, c])
            line = LineString(pts)
            width, material = float(rng.uniform(2.5, 4.5)), "gravel"
        else:
            width, material = float(rng.uniform(5.0, 8.0)), "asphalt"
        area = line.buffer(width / 2, cap_style="flat", quad_segs=2).difference(keep_out)
        if not area.is_empty:
            site.surfaces.append(Surface(area, material, float(rng.uniform(-1, 1))))


def _yard_extras(rng, site: Site, layout: Layout, season: str) -> None:
    """Masts, portals, the odd shed and tree line beside the tracks."""
    for x, y, h in layout.masts:
        site.overhead.append(dx.mast(x, y, h, float(rng.uniform(0.35, 0.6))))
    for beam, h in layout.portals:
        site.overhead.append(dx.portal_beam(beam, h))
    frame, half = layout.frame, layout.half_domain
    lo, hi = layout.occupied_v
    blocked = dx.blocker(site.solid[1:])
    for _ in range(int(rng.integers(0, 4))):
        side_v = hi + 4.0 if rng.random() < 0.5 else lo - 4.0
        length, width = float(rng.uniform(4.0, 16.0)), float(rng.uniform(3.0, 8.0))
        vc = side_v + (width / 2 if side_v > hi else -width / 2)
        cx, cy, angle = frame.rigid(float(rng.uniform(-half, half)), vc)
        prims = dx.building(rng, cx, cy, angle, length, width, "shed", season == "snow")
        if not blocked(prims[0].polygon):
            site.prims += prims
            site.solid.append(prims[0].polygon)
