"""Per-pixel paint of prims by style: flat roofs, ribs, tank cylinders, gable roofs, draped tarps,
crowns, road vehicles and bulk loads.

Every function works on the flat list of pixels a style covers, in the prim's own frame: ``u``
along and ``v`` across in metres, ``un``/``vn`` the same scaled to -1..1. Lighting is Lambertian
against the sun vector, normalised so a level surface keeps its paint colour.
"""

from __future__ import annotations

import math

import numpy as np

from models.synth.noise import stripe_coverage


def sun_vector(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit vector towards the sun in (east, north, up)."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e)], dtype=np.float32)


def lambert(nx, ny, nz, sun: np.ndarray, ambient: float = 0.4) -> np.ndarray:
    """Brightness of a surface with normal (nx, ny, nz) relative to level ground."""
    ndotl = np.maximum(nx * sun[0] + ny * sun[1] + nz * sun[2], 0.0)
    return (ambient + (1 - ambient) * ndotl) / (ambient + (1 - ambient) * sun[2])


class PixelSet:
    """The pixels of one style, with their prims' parameters gathered per pixel."""

    def __init__(self, x, y, pid, prims_arrays: dict, p: float) -> None:
        a = prims_arrays
        self.pid = pid
        cos, sin = a["cos"][pid], a["sin"][pid]
        rx, ry = x - a["cx"][pid], y - a["cy"][pid]
        self.u = rx * cos + ry * sin
        self.v = -rx * sin + ry * cos
        self.hl, self.hw = a["hl"][pid], a["hw"][pid]
        self.un = np.clip(self.u / self.hl, -1.0, 1.0)
        self.vn = np.clip(self.v / self.hw, -1.0, 1.0)
        self.cos, self.sin = cos, sin
        self.params = a["params"][pid]
        self.height = a["height"][pid]
        self.p = p


def rim(ps: PixelSet, width_m: float = 0.12) -> np.ndarray:
    edge = np.minimum(ps.hl - np.abs(ps.u), ps.hw - np.abs(ps.v))
    return np.where(edge < max(width_m, 0.3 * ps.p), 0.92, 1.0).astype(np.float32)


def paint_flat(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    return rim(ps), ps.height


def paint_ribs(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    period, contrast = ps.params[:, 0], ps.params[:, 1]
    cov = stripe_coverage(ps.u / period, 1.0, 0.5, ps.p / period)
    return rim(ps) * (1 + contrast * (2 * cov - 1)), ps.height


def paint_long_ribs(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    period, contrast = ps.params[:, 0], ps.params[:, 1]
    cov = stripe_coverage(ps.v / period, 1.0, 0.5, ps.p / period)
    return rim(ps) * (1 + contrast * (2 * cov - 1)), ps.height


def paint_cylinder(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    # normal across the barrel: vn along the v axis (world (-sin, cos)), the rest up
    nz = np.sqrt(np.clip(1 - ps.vn**2, 0.0, 1.0))
    nx, ny = -ps.sin * ps.vn, ps.cos * ps.vn
    shade = lambert(nx, ny, nz, sun, ambient=0.3)
    # a dished end cap over the last half metre
    end = np.clip((ps.hl - np.abs(ps.u)) / 0.5, 0.0, 1.0)
    shade = shade * (0.75 + 0.25 * end)
    spec = ps.params[:, 0] * np.clip(nx * sun[0] + ny * sun[1] + nz * sun[2], 0, 1) ** 24
    return shade + spec, ps.height * (0.75 + 0.25 * nz)


def paint_gable(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    pitch = np.radians(ps.params[:, 0])
    side = np.where(ps.v >= 0, 1.0, -1.0)
    nxy, nz = np.sin(pitch) * side, np.cos(pitch)
    shade = lambert(-ps.sin * nxy, ps.cos * nxy, nz, sun, ambient=0.45)
    ridge = np.abs(ps.v) < max(0.12, 0.4 * ps.p)
    shade = np.where(ridge, shade * 0.9, shade)
    height = ps.height + (ps.hw - np.abs(ps.v)) * np.tan(pitch) * 0.5
    return rim(ps, 0.2) * shade, height


def tarp_height(ps: PixelSet, noise) -> np.ndarray:
    """Cloth over a box: a drape rising from the hem over ``p2`` metres, wrinkles of ``p0`` metres
    at about ``p1`` metres, running in a direction that varies per tarp."""
    amp, scale, drape_w = ps.params[:, 0], ps.params[:, 1], np.maximum(ps.params[:, 2], 0.05)
    edge = np.minimum(ps.hl - np.abs(ps.u), ps.hw - np.abs(ps.v))
    t = np.clip(edge / drape_w, 0.0, 1.0)
    drape = t * t * (3 - 2 * t)
    beta = ps.pid * 2.39996
    phase = (ps.u * np.cos(beta) + ps.v * np.sin(beta)) / scale
    wrinkle = 0.55 * np.sin(2 * np.pi * phase + 2.5 * noise["wrinkle"]) + 0.45 * noise["fine"]
    return ps.height * (0.35 + 0.65 * drape) + amp * wrinkle * (0.3 + 0.7 * drape)


def paint_crown(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    r = np.clip(np.hypot(ps.un, ps.vn) * 1.2, 0.0, 1.0)
    nz = np.sqrt(np.clip(1 - r**2, 0.0, 1.0)) + 0.15
    gx, gy = ps.un * 1.2, ps.vn * 1.2
    nx, ny = gx * ps.cos - gy * ps.sin, gx * ps.sin + gy * ps.cos
    norm = np.sqrt(nx**2 + ny**2 + nz**2)
    shade = lambert(nx / norm, ny / norm, nz / norm, sun, ambient=0.35)
    leafy = ps.params[:, 0]
    clumps = 1 + (0.25 + 0.35 * (1 - leafy)) * noise["clump"]
    return shade * clumps * 0.9, ps.height * np.sqrt(np.clip(1 - r**2, 0.05, 1.0)) * (0.4 + 0.6 * leafy)


def paint_vehicle(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    un = ps.un
    glass = ((un > 0.2) & (un < 0.45)) | ((un < -0.55) & (un > -0.75)) | (np.abs(ps.vn) > 0.82)
    return np.where(glass, 0.3, 1.0).astype(np.float32), ps.height


def paint_load(ps: PixelSet, sun, noise) -> tuple[np.ndarray, np.ndarray]:
    mottle = ps.params[:, 0]
    return 1 + mottle * noise["clump"] + 0.5 * mottle * noise["fine"], ps.height + 0.2 * noise["clump"]


PAINTERS = {
    "flat": paint_flat,
    "ribs": paint_ribs,
    "long_ribs": paint_long_ribs,
    "cylinder": paint_cylinder,
    "gable": paint_gable,
    "crown": paint_crown,
    "vehicle": paint_vehicle,
    "load": paint_load,
}
