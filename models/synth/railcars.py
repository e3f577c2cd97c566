"""Railcars: kinds, sizes and paint, and trains of coupled cars parked on the yard's tracks.

Sizes follow the real statistics (USE_CASE.md): body length about 10-22 m (median about 14.5 m),
width 2.4-3.2 m, about 1 m between coupled bodies. Each car is a footprint (its label, an oriented
rectangle along the track) plus the prims that paint it: a body and its details (tank barrel and
walkway, gondola load, containers on a flat, locomotive roof equipment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box
from shapely.strtree import STRtree

from models.synth.colours import CAR_PALETTES, CONTAINER_PALETTE, TARP_PALETTE, jitter, mix, pick, weather, wide_colour
from models.synth.layout import Track
from models.synth.prims import Prim, rect

KINDS = ("box", "tank", "flat", "gondola", "hopper", "locomotive")
# Share of cars (block trains' first car included) painted from ``colours.wide_colour`` rather than
# their kind's palette (engine 1.6.0).
WIDE_COLOUR_SHARE = 0.2
KIND_WEIGHTS = (0.24, 0.21, 0.19, 0.16, 0.17, 0.03)
_KIND_CUM = np.cumsum(KIND_WEIGHTS) / sum(KIND_WEIGHTS)
_WAGON_CUM = np.cumsum(KIND_WEIGHTS[:5]) / sum(KIND_WEIGHTS[:5])


def _kind(rng: np.random.Generator, wagons_only: bool = False) -> str:
    cum = _WAGON_CUM if wagons_only else _KIND_CUM
    return KINDS[min(int(np.searchsorted(cum, rng.random(), side="right")), len(cum) - 1)]


# Body length ranges (m) per kind: (low, mode, high) of a triangular draw.
LENGTHS = {
    "box": (12.5, 15.5, 22.0),
    "tank": (10.0, 13.0, 18.5),
    "flat": (12.5, 14.5, 22.0),
    "gondola": (11.0, 13.5, 16.5),
    "hopper": (9.5, 13.0, 16.5),
    "locomotive": (15.0, 18.5, 22.5),
}
WIDTHS = {"box": (2.7, 3.2), "tank": (2.5, 3.05), "flat": (2.45, 2.9), "gondola": (2.75, 3.2),
          "hopper": (2.7, 3.15), "locomotive": (2.85, 3.15)}  # fmt: skip
HEIGHTS = {"box": (4.0, 4.6), "tank": (3.5, 4.3), "flat": (1.2, 1.4), "gondola": (2.6, 3.4), "hopper": (3.6, 4.4),
           "locomotive": (4.1, 4.6)}  # fmt: skip
GAP_M = (0.6, 1.4)
LOADS = {"coal": (0.10, 0.10, 0.10), "scrap": (0.40, 0.30, 0.24), "sand": (0.70, 0.62, 0.48),
         "ore": (0.42, 0.26, 0.20), "timber": (0.55, 0.42, 0.28)}  # fmt: skip


@dataclass
class Car:
    kind: str
    cx: float
    cy: float
    angle: float
    length: float
    width: float
    height: float
    prims: list[Prim] = field(default_factory=list)

    @property
    def polygon(self) -> Polygon:
        return rect(self.cx, self.cy, self.angle, self.length, self.width)

    @property
    def heading_deg(self) -> float:
        """Compass bearing of the long axis, clockwise from north, in [0, 180)."""
        return (90.0 - math.degrees(self.angle)) % 180.0


@dataclass
class CarSpec:
    """What a car will look like, drawn before it is placed (its length decides where it fits)."""

    kind: str
    length: float
    width: float
    height: float
    colour: tuple[float, float, float]
    style: dict


def draw_spec(rng: np.random.Generator, kind: str, template: CarSpec | None = None, snow: float = 0.0) -> CarSpec:
    """A car of ``kind``; block trains pass a ``template`` so their cars look alike."""
    if template is not None and template.kind == kind:
        length = float(np.clip(template.length + rng.normal(0.0, 0.15), 9.0, 23.0))
        width = template.width
        colour = jitter(rng, template.colour, 0.05) if rng.random() < 0.85 else pick(rng, CAR_PALETTES[kind])
        style = dict(template.style)
    else:
        lo, mode, hi = LENGTHS[kind]
        length = float(rng.triangular(lo, mode, hi))
        width = float(rng.uniform(*WIDTHS[kind]))
        colour = weather(rng, pick(rng, CAR_PALETTES[kind]))
        style = _style(rng, kind)
        # Seeded by the car's own draws, not drawn from ``rng``: every other draw of the scene stays as
        # it was, so engine 1.6.0 scenes differ from 1.5.0's in these cars' paint alone.
        own = np.random.default_rng([int(length * 1e6), int(width * 1e6)])
        if own.random() < WIDE_COLOUR_SHARE:
            colour = wide_colour(own)
    if kind == "flat":
        style = dict(style, containers=_flat_load(rng, length, style.get("load")))
    if kind == "gondola" and template is not None and rng.random() < 0.3:
        style = dict(style, load=str(rng.choice(["empty", *LOADS])))
    if snow > 0 and kind not in ("gondola",):
        colour = mix(colour, (0.93, 0.94, 0.96), snow * float(rng.uniform(0.6, 1.0)))
    height = float(rng.uniform(*HEIGHTS[kind]))
    return CarSpec(kind, length, width, height, colour, style)


def _style(rng: np.random.Generator, kind: str) -> dict:
    if kind == "box":
        return {
            "ribs": rng.random() < 0.6,
            "period": float(rng.uniform(0.5, 1.3)),
            "contrast": float(rng.uniform(0.03, 0.12)),
        }
    if kind == "hopper":
        return {
            "covered": rng.random() < 0.6,
            "bay": float(rng.uniform(1.8, 3.4)),
            "contrast": float(rng.uniform(0.04, 0.12)),
        }
    if kind == "gondola":
        return {"load": str(rng.choice(["empty", *LOADS], p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]))}
    if kind == "flat":
        return {"load": str(rng.choice(["containers", "empty", "timber", "tarp", "pipes"], p=[0.6, 0.15, 0.1, 0.08, 0.07]))}
    if kind == "locomotive":
        return {"boxes": int(rng.integers(2, 5))}
    return {"walkway": rng.random() < 0.7}  # fmt: skip


def _flat_load(rng: np.random.Generator, length: float, load: str | None) -> list[tuple[float, float, tuple]]:
    """Items on a flat car as (start, end) along the body from its rear end, and a colour."""
    if load == "containers":
        usable = length - 0.8
        sizes: list[float] = []
        while True:
            size = 12.19 if rng.random() < 0.45 else 6.06
            if sum(sizes) + size + 0.3 * len(sizes) > usable:
                if size == 12.19 and sum(sizes) + 6.06 + 0.3 * len(sizes) <= usable:
                    size = 6.06
                else:
                    break
            sizes.append(size)
            if rng.random() < 0.25:
                break
        out, pos = [], float(rng.uniform(0.4, max(0.4, usable - sum(sizes) - 0.3 * (len(sizes) - 1)) + 0.4))
        for size in sizes:
            out.append((pos, pos + size, weather(rng, pick(rng, CONTAINER_PALETTE), (0.1, 0.35), 0.15)))
            pos += size + float(rng.uniform(0.1, 0.5))
        return out
    if load in ("timber", "pipes", "tarp"):
        palette = TARP_PALETTE if load == "tarp" else {"rust": 1, "dark_grey": 1}
        colour = LOADS["timber"] if load == "timber" else pick(rng, palette)
        a = float(rng.uniform(0.5, 1.5))
        return [(a, length - float(rng.uniform(0.5, 1.5)), colour)]
    return []


def car_prims(rng: np.random.Generator, spec: CarSpec, cx: float, cy: float, angle: float) -> list[Prim]:
    """The prims painting one car (body first, details on top)."""
    L, W, H, col, st = spec.length, spec.width, spec.height, spec.colour, spec.style  # noqa: N806
    c, s = math.cos(angle), math.sin(angle)

    def at(du: float, dv: float = 0.0) -> tuple[float, float]:
        return cx + c * du - s * dv, cy + s * du + c * dv

    dirt = float(rng.uniform(0.03, 0.12))
    kind = spec.kind
    if kind == "box":
        style = "ribs" if st["ribs"] else "flat"
        return [Prim(cx, cy, angle, L, W, col, style, H, (st["period"], st["contrast"], 0, 0), dirt)]
    if kind == "tank":
        frame = Prim(cx, cy, angle, L, W, mix(col, (0.1, 0.1, 0.1), 0.6), "flat", 1.4, dirt=0.05)
        barrel = Prim(cx, cy, angle, L - float(rng.uniform(0.6, 1.6)), W * float(rng.uniform(0.86, 0.96)), col,
                      "cylinder", H, (float(rng.uniform(0.1, 0.5)), 0, 0, 0), dirt)  # fmt: skip
        out = [frame, barrel]
        if st.get("walkway"):
            out.append(Prim(*at(0.0), angle, float(rng.uniform(1.5, 3.5)), 0.7, mix(col, (0.5, 0.5, 0.5), 0.5), "ribs",
                            H + 0.15, (0.25, 0.3, 0, 0), 0.05, base=H))  # fmt: skip
        return out
    if kind == "hopper":
        if st["covered"]:
            out = [Prim(cx, cy, angle, L, W, col, "long_ribs", H, (0.9, st["contrast"] * 0.6, 0, 0), dirt)]
            n_hatch = int(rng.integers(3, 7))
            for du in np.linspace(-L / 2 + 1.5, L / 2 - 1.5, n_hatch):
                hatch = mix(col, (0.2, 0.2, 0.2), 0.35)
                out.append(Prim(*at(float(du)), angle, 0.9, 0.7, hatch, "flat", H + 0.1, dirt=0.03, base=H))
            return out
        return [Prim(cx, cy, angle, L, W, col, "ribs", H, (st["bay"], st["contrast"] * 2, 0, 0), dirt)]
    if kind == "gondola":
        out = [Prim(cx, cy, angle, L, W, col, "flat", H, dirt=dirt)]
        rim = float(rng.uniform(0.12, 0.25))
        load = st["load"]
        if load == "empty":
            inner = Prim(cx, cy, angle, L - 2 * rim, W - 2 * rim, mix(col, (0.08, 0.08, 0.08), 0.5), "flat", 1.3, dirt=0.15)
        else:
            mottle = (float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.3, 1.0)), 0.0, 0.0)
            inner = Prim(
                cx,
                cy,
                angle,
                L - 2 * rim,
                W - 2 * rim,
                jitter(rng, LOADS[load], 0.08),
                "load",
                H - float(rng.uniform(0.1, 0.8)),
                mottle,
            )
        return out + [inner]
    if kind == "flat":
        out = [Prim(cx, cy, angle, L, W, col, "ribs", H, (float(rng.uniform(0.3, 0.6)), 0.08, 0, 0), dirt)]
        load = st.get("load")
        for a, b, colour in st.get("containers", []):
            du = -L / 2 + (a + b) / 2
            if load == "containers":
                out.append(Prim(*at(du), angle, b - a, 2.44, colour, "ribs", H + 2.6, (0.3, 0.12, 0, 0), 0.06, base=H))
            elif load == "tarp":
                out.append(Prim(*at(du), angle, b - a, W - 0.2, colour, "tarp", H + 1.6, (0.12, 0.8, 0.6, 0), 0.04, base=H))
            elif load == "pipes":
                out.append(Prim(*at(du), angle, b - a, W - 0.3, colour, "long_ribs", H + 1.0, (0.5, 0.35, 0, 0), 0.05,
                                base=H))  # fmt: skip
            else:
                out.append(Prim(*at(du), angle, b - a, W - 0.3, colour, "load", H + 1.4, (0.3, 0.4, 0, 0), 0.05, base=H))
        return out
    # locomotive: body, then roof equipment and cab roofs
    out = [Prim(cx, cy, angle, L, W, col, "flat", H, dirt=dirt)]
    for du in rng.uniform(-L / 2 + 3, L / 2 - 3, size=st["boxes"]):
        shade = (0.2, 0.2, 0.22) if rng.random() < 0.6 else (0.6, 0.6, 0.6)
        out.append(Prim(*at(float(du)), angle, float(rng.uniform(1.0, 3.0)), W * float(rng.uniform(0.4, 0.7)),
                        mix(col, shade, 0.6), "ribs", H + 0.3, (0.3, 0.15, 0, 0), 0.05, base=H))  # fmt: skip
    return out


def _segments_in(line: LineString, clip: Polygon) -> list[LineString]:
    part = line.intersection(clip)
    if part.is_empty:
        return []
    parts = list(part.geoms) if hasattr(part, "geoms") else [part]
    return [p for p in parts if isinstance(p, LineString) and p.length > 10.0]


def _boxes(cx, cy, angle, length, width) -> np.ndarray:
    """(N, 4, 2) corners of oriented boxes."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    du = np.array([-0.5, 0.5, 0.5, -0.5])[None] * length[:, None]
    dv = np.array([-0.5, -0.5, 0.5, 0.5])[None] * width[:, None]
    return np.stack([cx[:, None] + c * du - s * dv, cy[:, None] + s * du + c * dv], axis=-1)


def place_trains(
    rng: np.random.Generator,
    tracks: list[Track],
    cond: dict,
    extent_m: float,
    obstacles: list[Polygon],
    min_cars: int = 0,
    region: Polygon | None = None,
) -> list[Car]:
    """Trains of coupled cars on the parkable tracks inside the scene (plus a margin).

    Candidate cars are laid along each track; a candidate is dropped where it would foul another
    track (near switches), an obstacle, or a car laid before it. Extra passes at full occupancy
    fill free track until ``min_cars`` cars stand inside ``region`` (default: the scene)."""
    half = extent_m / 2.0
    clip = box(-half - 25, -half - 25, half + 25, half + 25)
    fixed = STRtree([t.line.buffer(1.7, cap_style="flat") for t in tracks] + list(obstacles))
    snow = float(rng.uniform(0.5, 1.0)) if cond["season"] == "snow" and rng.random() < 0.5 else 0.0
    segments = [(i, seg) for i, t in enumerate(tracks) if t.parkable for seg in _segments_in(t.line, clip)]
    occupancy = float(cond["occupancy"])
    specs: list[CarSpec] = []
    cx, cy, angle = np.zeros(0), np.zeros(0), np.zeros(0)
    own = np.zeros(0, dtype=np.int64)
    kept = np.zeros(0, dtype=bool)
    for attempt in range(6):
        new_specs, new_geo, new_own = [], [], []
        for k in rng.permutation(len(segments)):
            i, seg = segments[int(k)]
            occ = float(np.clip(occupancy + 0.25 * attempt + rng.normal(0.0, 0.25), 0.0, 1.0))
            if tracks[i].role in ("main", "branch"):
                occ *= 0.5
            plan = _train_plan(rng, seg.length, occ, snow)
            if not plan:
                continue
            starts = np.array([a for _, a in plan])
            lengths = np.array([sp.length for sp, _ in plan])
            a = shapely.get_coordinates(shapely.line_interpolate_point(seg, starts))
            b = shapely.get_coordinates(shapely.line_interpolate_point(seg, starts + lengths))
            new_geo.append(np.column_stack([(a + b) / 2, np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0])]))
            new_specs += [sp for sp, _ in plan]
            new_own += [i] * len(plan)
        if new_specs:
            geo = np.concatenate(new_geo)
            specs += new_specs
            cx, cy, angle = np.append(cx, geo[:, 0]), np.append(cy, geo[:, 1]), np.append(angle, geo[:, 2])
            own = np.append(own, new_own)
        kept = _resolve(cx, cy, angle, specs, own, fixed)
        inside = shapely.contains_xy(region, cx, cy) if region is not None else (np.abs(cx) < half) & (np.abs(cy) < half)
        if int((kept & inside).sum()) >= min_cars:
            break
    cars: list[Car] = []
    if not specs:
        return cars
    lengths = np.array([sp.length for sp in specs])
    widths = np.array([sp.width for sp in specs])
    corners = _boxes(cx, cy, angle, lengths, widths)
    visible = kept & (corners[..., 0].max(1) > -half) & (corners[..., 0].min(1) < half)
    visible &= (corners[..., 1].max(1) > -half) & (corners[..., 1].min(1) < half)
    for j in np.nonzero(visible)[0]:
        spec = specs[j]
        car = Car(spec.kind, float(cx[j]), float(cy[j]), float(angle[j]), spec.length, spec.width, spec.height)
        car.prims = car_prims(rng, spec, car.cx, car.cy, car.angle)
        cars.append(car)
    return cars


def _resolve(cx, cy, angle, specs: list[CarSpec], own: np.ndarray, fixed: STRtree) -> np.ndarray:
    """Which candidates stand: clear of other tracks' fouling bands and obstacles, and of every
    earlier candidate that stands (with 0.2 m to spare all round)."""
    n = len(specs)
    if n == 0:
        return np.zeros(0, dtype=bool)
    lengths = np.array([sp.length for sp in specs])
    widths = np.array([sp.width for sp in specs])
    polys = shapely.polygons(_boxes(cx, cy, angle, lengths, widths))
    ok = np.ones(n, dtype=bool)
    src, hit = fixed.query(polys, predicate="intersects")
    bad = hit != own[src]
    ok[src[bad]] = False
    clearance = shapely.polygons(_boxes(cx, cy, angle, lengths + 0.4, widths + 0.4))
    a, b = STRtree(clearance).query(clearance, predicate="intersects")
    later = b > a
    conflicts: dict[int, list[int]] = {}
    for x, y in zip(a[later].tolist(), b[later].tolist(), strict=True):
        conflicts.setdefault(x, []).append(y)
    for j in range(n):
        if ok[j]:
            for k in conflicts.get(j, ()):
                ok[k] = False
    return ok


def _train_plan(rng: np.random.Generator, total: float, occ: float, snow: float) -> list[tuple[CarSpec, float]]:
    """Cars and their start positions (m along a track ``total`` long): trains of coupled cars
    with about 1 m between bodies, separated by stretches of empty track."""
    plan: list[tuple[CarSpec, float]] = []
    s = float(rng.uniform(0.0, 40.0))
    while s < total - 9.0:
        if rng.random() >= occ:
            s += float(rng.uniform(20.0, 120.0))
            continue
        n_cars = int(min(rng.geometric(1 / 14), 60))
        homogeneous = rng.random() < 0.55
        base_kind = _kind(rng, wagons_only=True)
        template = None
        loco_front = rng.random() < 0.25
        for j in range(n_cars):
            kind = "locomotive" if loco_front and j == 0 else base_kind if homogeneous else _kind(rng)
            spec = draw_spec(rng, kind, template if homogeneous else None, snow)
            if homogeneous and kind == base_kind and template is None:
                template = spec
            if s + spec.length > total:
                break
            plan.append((spec, s))
            s += spec.length + float(rng.uniform(*GAP_M))
        s += float(rng.uniform(8.0, 90.0))
    return plan
