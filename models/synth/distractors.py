"""Things that are neither railcars nor tarped cargo but look a little like them: containers on the
ground, trucks and cars, warehouses with long roofs, sheds, houses, trees and catenary masts. They
are painted and cast shadows, and carry no label (background)."""

from __future__ import annotations

import math

import numpy as np
import shapely

from models.synth.colours import CONTAINER_PALETTE, PAINT, ROOF_PALETTE, TREE, VEHICLE_PALETTE, jitter, mix, pick, weather
from models.synth.layout import YardFrame
from models.synth.prims import Prim

CONTAINER_20, CONTAINER_40, CONTAINER_W, CONTAINER_H = 6.06, 12.19, 2.44, 2.59


def container_block(rng: np.random.Generator, frame: YardFrame, u0: float, u1: float, v0: float, v1: float) -> list[Prim]:
    """Containers standing on the ground in rows, stacked one to four high, filling a slot."""
    prims: list[Prim] = []
    across = rng.random() < 0.35  # long axis across the slot rather than along it
    length = CONTAINER_40 if rng.random() < 0.55 else CONTAINER_20
    pitch = CONTAINER_W + float(rng.uniform(0.05, 0.4))
    max_tiers = int(rng.integers(1, 5))
    if across:
        n_rows = max(1, int((v1 - v0) // (length + 1.0)))
        for r in range(n_rows):
            vc = v0 + (r + 0.5) * (v1 - v0) / n_rows
            for u in np.arange(u0 + pitch / 2, u1 - pitch / 2, pitch):
                if rng.random() < 0.1:
                    continue
                prims += _stack(rng, frame, float(u), vc, math.pi / 2, length, max_tiers)
    else:
        n_rows = max(1, int((v1 - v0) // pitch))
        for r in range(n_rows):
            vc = v0 + (r + 0.5) * pitch
            u = u0 + float(rng.uniform(0, 1.0))
            while u + length < u1:
                if rng.random() > 0.1:
                    prims += _stack(rng, frame, u + length / 2, vc, 0.0, length, max_tiers)
                u += length + float(rng.uniform(0.1, 1.5))
    return prims


def _stack(rng, frame: YardFrame, u: float, v: float, rel: float, length: float, max_tiers: int) -> list[Prim]:
    cx, cy, angle = frame.rigid(u, v, rel + float(rng.normal(0.0, 0.01)))
    tiers = int(rng.integers(1, max_tiers + 1))
    return [
        Prim(cx, cy, angle, length, CONTAINER_W, weather(rng, pick(rng, CONTAINER_PALETTE), (0.1, 0.35), 0.15), "ribs",
             CONTAINER_H * tiers,
             (0.3, float(rng.uniform(0.06, 0.16)), 0, 0), float(rng.uniform(0.03, 0.1)))
    ]  # fmt: skip


def truck(rng: np.random.Generator, cx: float, cy: float, angle: float) -> list[Prim]:
    """A tractor (cab) and its trailer: box, curtain-sider, tanker or container chassis; about 16.5 m."""
    c, s = math.cos(angle), math.sin(angle)
    trailer_len = float(rng.uniform(11.0, 13.6))
    cab_len = float(rng.uniform(2.2, 2.6))
    total = trailer_len + cab_len + 0.5
    tc = (-total / 2 + trailer_len / 2, total / 2 - cab_len / 2)
    kind = str(rng.choice(["box", "curtain", "tanker", "container", "flatbed"]))
    trailer_col = pick(rng, {"white": 5, "light_grey": 3, "silver": 2, "blue": 1, "red": 1, "dark_grey": 1, "green": 1})
    style, params = "flat", (0.0, 0.0, 0.0, 0.0)
    if kind == "curtain":
        style, params = "tarp", (0.03, 0.5, 0.15, 0.0)
    elif kind == "tanker":
        style, params = "cylinder", (0.5, 0.0, 0.0, 0.0)
    elif kind == "container":
        style, params = "ribs", (0.3, 0.12, 0.0, 0.0)
        trailer_col = pick(rng, CONTAINER_PALETTE)
    elif kind == "flatbed":
        trailer_col = (0.3, 0.28, 0.26)
    out = [
        Prim(cx + c * tc[0], cy + s * tc[0], angle, trailer_len, 2.5, trailer_col, style,
             1.4 if kind == "flatbed" else 4.0, params, 0.04),
        Prim(cx + c * tc[1], cy + s * tc[1], angle, cab_len, 2.45, pick(rng, VEHICLE_PALETTE), "flat", 3.2, dirt=0.03),
    ]  # fmt: skip
    return out


def vehicle(rng: np.random.Generator, cx: float, cy: float, angle: float) -> Prim:
    length = float(rng.uniform(4.0, 5.0)) if rng.random() < 0.85 else float(rng.uniform(5.0, 7.0))
    return Prim(cx, cy, angle, length, float(rng.uniform(1.7, 2.0)), pick(rng, VEHICLE_PALETTE), "vehicle", 1.5,
                (0.0, 0.0, 0.0, 0.0), 0.02)  # fmt: skip


def tree(rng: np.random.Generator, x: float, y: float, season: str, radius: float | None = None) -> Prim:
    r = float(radius if radius is not None else rng.uniform(1.5, 5.5))
    n = 14
    ang = np.linspace(0, 2 * math.pi, n, endpoint=False)
    rr = r * (1 + rng.normal(0, 0.08, size=n))
    crown = shapely.polygons(np.column_stack([x + rr * np.cos(ang), y + rr * np.sin(ang)]))
    leafy = 1.0 if season in ("summer", "spring", "arid") else 0.85 if season == "autumn" else 0.3
    colour = jitter(rng, TREE[season], 0.12)
    height = float(rng.uniform(1.2, 3.0) * r + 2.0)
    return Prim(x, y, 0.0, 2.4 * r, 2.4 * r, colour, "crown", height, (leafy, 0, 0, 0), 0.0, crown)


def tree_cluster(rng: np.random.Generator, x: float, y: float, spread: float, season: str, blocked) -> list[Prim]:
    out = []
    for _ in range(int(rng.integers(1, 12))):
        px, py = x + rng.normal(0, spread), y + rng.normal(0, spread)
        p = tree(rng, float(px), float(py), season)
        if not blocked(p.polygon):
            out.append(p)
    return out


def building(
    rng: np.random.Generator, cx: float, cy: float, angle: float, length: float, width: float, kind: str, snow: bool
) -> list[Prim]:
    """A warehouse (long roof), shed or house as roof prims; ``kind`` in warehouse | shed | house."""
    colour = pick(rng, ROOF_PALETTE)
    if kind == "house":
        colour = pick(rng, {"red": 4, "brown": 3, "dark_grey": 3, "rust": 1, "light_grey": 1})
    if snow and rng.random() < 0.7:
        colour = mix(colour, (0.92, 0.93, 0.95), float(rng.uniform(0.6, 0.95)))
    if kind == "warehouse":
        height = float(rng.uniform(6.0, 14.0))
        roof = str(rng.choice(["gable", "long_ribs", "flat", "sawtooth"], p=(0.3, 0.3, 0.3, 0.1)))
    elif kind == "shed":
        height = float(rng.uniform(2.8, 5.5))
        roof = str(rng.choice(["gable", "long_ribs", "flat"]))
    else:
        height = float(rng.uniform(5.0, 9.0))
        roof = "gable"
    if roof == "gable":
        pitch = float(rng.uniform(4.0, 14.0)) if kind != "house" else float(rng.uniform(25.0, 45.0))
        main = Prim(cx, cy, angle, length, width, colour, "gable", height, (pitch, 0, 0, 0), 0.04)
    elif roof == "long_ribs":
        ribs = (float(rng.uniform(0.3, 1.0)), 0.08, 0.0, 0.0)
        main = Prim(cx, cy, angle, length, width, colour, "long_ribs", height, ribs, 0.05)
    elif roof == "sawtooth":
        main = Prim(
            cx,
            cy,
            angle,
            length,
            width,
            colour,
            "ribs",
            height,
            (float(rng.uniform(5.0, 10.0)), float(rng.uniform(0.08, 0.22)), 0, 0),
            0.04,
        )
    else:
        main = Prim(cx, cy, angle, length, width, colour, "flat", height, dirt=float(rng.uniform(0.04, 0.15)))
    out = [main]
    if roof in ("flat", "long_ribs") and kind == "warehouse":
        c, s = math.cos(angle), math.sin(angle)
        for _ in range(int(rng.integers(0, 12))):
            du, dv = rng.uniform(-0.45, 0.45) * length, rng.uniform(-0.4, 0.4) * width
            shade = (0.85, 0.85, 0.85) if rng.random() < 0.5 else (0.3, 0.3, 0.32)
            size = float(rng.uniform(1.0, 4.0)), float(rng.uniform(1.0, 3.0))
            out.append(Prim(cx + c * du - s * dv, cy + s * du + c * dv, angle, *size, mix(colour, shade, 0.5), "flat",
                            height + 1.0, dirt=0.02, base=height))  # fmt: skip
    return out


def mast(x: float, y: float, height: float, size: float = 0.5) -> Prim:
    return Prim(x, y, 0.0, size, size, PAINT["dark_grey"], "flat", height, dirt=0.0)


def portal_beam(line, height: float) -> Prim:
    (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
    angle = math.atan2(y1 - y0, x1 - x0)
    return Prim((x0 + x1) / 2, (y0 + y1) / 2, angle, float(np.hypot(x1 - x0, y1 - y0)), 0.45,
                (0.42, 0.42, 0.43), "flat", height, dirt=0.0, floating=True)  # fmt: skip


def blocker(polygons: list):
    """A predicate: does a polygon touch any of ``polygons``? (prepared union, for placement)."""
    if not polygons:
        return lambda _p: False
    union = shapely.union_all(polygons)
    shapely.prepare(union)
    return lambda p: bool(union.intersects(p))
