"""Painted primitives and surfaces: the small vocabulary every generator hands to the renderer.

A :class:`Prim` is something standing on the ground (a car body, a container, a roof, a tarp, a
crown, a mast) drawn as an oriented box in local metres with a style, a colour, a height and four
style parameters. A :class:`Surface` is flat ground cover (road, hardstand, ballast, field). The
renderer paints surfaces first, then tracks, then prims in list order (later ones on top), and
derives shadows from the prims' heights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

# Prim styles the renderer knows (see render.STYLE_PAINTERS).
STYLES = (
    "flat",  # uniform paint with dirt and a darker rim
    "ribs",  # transverse ribs: p0 period (m), p1 contrast
    "long_ribs",  # ribs along the long axis: p0 period (m), p1 contrast
    "cylinder",  # tank: lit as a cylinder along the long axis; p0 specular strength
    "gable",  # two roof halves meeting at a ridge along the long axis; p0 pitch (deg)
    "tarp",  # draped, wrinkled cloth; p0 wrinkle amplitude (m), p1 wrinkle scale (m), p2 drape width (m)
    "crown",  # tree crown, lit as a dome with leaf clumps; p0 leafiness (1 full, 0 bare)
    "vehicle",  # road vehicle: body colour with dark glass bands
    "load",  # bulk load (coal, scrap, sand, timber): coarse mottling; p0 mottle strength, p1 grain (m)
)
STYLE_INDEX = {name: i for i, name in enumerate(STYLES)}


@dataclass
class Prim:
    cx: float
    cy: float
    angle: float  # direction of the long (u) axis, radians anticlockwise from east
    length: float
    width: float
    colour: tuple[float, float, float]  # display RGB in 0..1
    style: str = "flat"
    height: float = 0.0  # top above ground, metres
    params: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    dirt: float = 0.05
    shape: Polygon | None = None  # footprint when not the box itself (round crowns, draped tarps)
    floating: bool = False  # overhead (a portal beam): shades the ground below but stands on nothing
    base: float = 0.0  # height it stands on, metres (a hatch on a car's roof: the roof's)

    @property
    def polygon(self) -> Polygon:
        return self.shape if self.shape is not None else rect(self.cx, self.cy, self.angle, self.length, self.width)


@dataclass
class Surface:
    geometry: object  # shapely (Multi)Polygon, local metres
    material: str
    tone: float = 0.0  # per-surface brightness offset, -1..1
    angle: float = 0.0  # direction of stripes (crop rows, joints), radians anticlockwise from east
    period: float = 0.0  # stripe period in metres, 0 for none


def box_corners(cx, cy, cos, sin, half_length, half_width) -> np.ndarray:
    """(N, 4, 2) corners of N oriented boxes from arrays of their centres, the cosine and sine of
    their angles and their half sides, in ``rect``'s order: the painter's and the lean's one recipe."""
    u = np.array([-1, 1, 1, -1], np.float64)[None] * half_length[:, None]
    v = np.array([-1, -1, 1, 1], np.float64)[None] * half_width[:, None]
    return np.stack([cx[:, None] + cos[:, None] * u - sin[:, None] * v,
                     cy[:, None] + sin[:, None] * u + cos[:, None] * v], axis=-1)  # fmt: skip


def rect(cx: float, cy: float, angle: float, length: float, width: float) -> Polygon:
    """Oriented rectangle centred at (cx, cy), ``length`` along ``angle``, ``width`` across;
    anticlockwise ring."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2.0, width / 2.0
    pts = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
    return shapely.polygons([(cx + c * x - s * y, cy + s * x + c * y) for x, y in pts])
