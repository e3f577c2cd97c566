"""Tarped cargo: crates, covered containers and machinery under draped, wrinkled tarps, laid out in
clusters on hardstands.

Items in a cluster stand apart (each its own object) or touch under one tarp (one object, as the
output contract allows). Each object is one ``tarped_cargo`` label (its tarp outline) and the prims
that paint it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon

from models.synth.colours import TARP_PALETTE, jitter, mix, pick
from models.synth.layout import YardFrame
from models.synth.prims import Prim, rect

MIN_ITEM_M = 1.6  # shortest side of a cargo item


@dataclass
class Cargo:
    polygon: Polygon
    prims: list[Prim] = field(default_factory=list)


def tarp_outline(rng: np.random.Generator, cx: float, cy: float, angle: float, length: float, width: float) -> Polygon:
    """A draped tarp's outline: the box with rounded corners and a wavy hem."""
    r = min(0.35, 0.25 * min(length, width))
    base = rect(cx, cy, angle, length - 2 * r, width - 2 * r).buffer(r, quad_segs=3)
    ring = np.asarray(shapely.segmentize(base, 0.5).exterior.coords)[:-1]
    centre = np.array([cx, cy])
    normal = ring - centre
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    wobble = rng.normal(0.0, float(rng.uniform(0.04, 0.14)), size=len(ring))
    for _ in range(2):
        wobble = (np.roll(wobble, 1) + 2 * wobble + np.roll(wobble, -1)) / 4
    poly = Polygon(ring + normal * wobble[:, None]).buffer(0)
    if poly.geom_type != "Polygon":
        poly = max(poly.geoms, key=lambda g: g.area)
    return poly


def _tarp_prim(rng, colour, cx, cy, angle, length, width, height, shape) -> Prim:
    strap = float(rng.uniform(1.2, 3.0)) if rng.random() < 0.4 else 0.0
    params = (float(rng.uniform(0.04, 0.2)), float(rng.uniform(0.5, 2.0)), float(rng.uniform(0.15, 0.6)), strap)
    return Prim(cx, cy, angle, length, width, colour, "tarp", height, params, float(rng.uniform(0.02, 0.08)), shape)


def _item_size(rng: np.random.Generator, kind: str) -> tuple[float, float, float]:
    if kind == "crate":
        a, b = rng.uniform(MIN_ITEM_M, 8.0), rng.uniform(MIN_ITEM_M, 3.5)
        return float(max(a, b)), float(min(a, b)), float(rng.uniform(1.0, 2.6))
    if kind == "container":
        return (12.3 if rng.random() < 0.4 else 6.2), 2.55, float(rng.uniform(2.6, 3.0))
    return float(rng.uniform(4.0, 14.0)), float(rng.uniform(2.2, 5.0)), float(rng.uniform(1.5, 3.5))


def cargo_cluster(
    rng: np.random.Generator, frame: YardFrame, u0: float, u1: float, v0: float, v1: float, snow: bool = False
) -> list[Cargo]:
    """Fill the yard-coordinate slot ``[u0, u1] x [v0, v1]`` with one cluster of tarped cargo
    (``snow``: a snowy season, so some clusters carry snow)."""
    out: list[Cargo] = []
    colour = pick(rng, TARP_PALETTE)
    if snow and rng.random() < 0.5:
        colour = mix(colour, (0.92, 0.93, 0.95), float(rng.uniform(0.3, 0.8)))
    same_colour = rng.random() < 0.6
    kind = str(rng.choice(["crate", "container", "equipment"], p=(0.55, 0.2, 0.25)))
    touching = rng.random() < 0.3
    tilt_max = math.radians(rng.choice([0.0, 3.0, 15.0]))
    rows = max(1, int((v1 - v0) // 4.5)) if kind == "crate" else 1
    row_h = (v1 - v0) / rows
    for r in range(rows):
        u = u0 + float(rng.uniform(0.0, 1.5))
        vc = v0 + (r + 0.5) * row_h
        run: list[tuple[float, float, float, float]] = []  # items of the current touching run
        while True:
            length, width, height = _item_size(rng, kind)
            width = min(width, row_h - 0.6)
            if width < MIN_ITEM_M or u + length > u1:
                break
            run.append((u, u + length, width, height))
            gap = 0.0 if touching and rng.random() < 0.7 else float(rng.uniform(0.9, 3.0))
            if gap > 0 or rng.random() < 0.3:
                out.append(_object(rng, frame, run, vc, colour if same_colour else pick(rng, TARP_PALETTE), tilt_max))
                run = []
            u += length + gap
        if run:
            out.append(_object(rng, frame, run, vc, colour if same_colour else pick(rng, TARP_PALETTE), tilt_max))
    return out


def _object(rng, frame: YardFrame, run, vc: float, colour, tilt_max: float) -> Cargo:
    """One tarp over a run of touching items (a single item when the run has one)."""
    a, b = run[0][0], run[-1][1]
    width = max(item[2] for item in run)
    height = max(item[3] for item in run)
    cx, cy, angle = frame.rigid((a + b) / 2, vc + float(rng.normal(0.0, 0.2)), float(rng.uniform(-1, 1)) * tilt_max)
    overhang = float(rng.uniform(0.05, 0.3))
    length, width = b - a + 2 * overhang, width + 2 * overhang
    if len(run) == 1 and length > 4.0 and rng.random() < 0.25:  # irregular machinery: a box sticking out
        shift = float(rng.uniform(-0.3, 0.3)) * length
        extra = rect(cx + math.cos(angle) * shift, cy + math.sin(angle) * shift, angle, length * 0.4, width * 1.35)
        base = rect(cx, cy, angle, length, width).union(extra).buffer(0.15, quad_segs=2)
        shape = base.simplify(0.05)
    else:
        shape = tarp_outline(rng, cx, cy, angle, length, width)
    # the prim's box spans the outline, so the drape reaches every hem
    xy = np.asarray(shape.exterior.coords) - (cx, cy)
    along = xy @ (math.cos(angle), math.sin(angle))
    across = xy @ (-math.sin(angle), math.cos(angle))
    length, width = 2 * float(np.abs(along).max()), 2 * float(np.abs(across).max())
    prim = _tarp_prim(rng, jitter(rng, colour, 0.04), cx, cy, angle, length, width, height, shape)
    return Cargo(polygon=shape, prims=[prim])
