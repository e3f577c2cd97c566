"""Painting tracks: rails, sleepers and the oily strip between the rails, at sub-pixel accuracy.

Each track's centre line is cut into segments; every pixel near a segment gets track coordinates
``s`` (metres along the track) and ``d`` (signed metres across). Rails are thin bands in ``d`` and
sleepers a square wave in ``s``; both are box-filtered over the pixel footprint, so a 7 cm rail at
0.5 m per pixel is a faint line and sleepers at 1 m per pixel fade to an even tone, as in real
imagery. Tracks whose bands overlap (switches) are painted in separate passes and combined with a
maximum, so both sets of rails show through a switch.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import Polygon, box
from shapely.strtree import STRtree

from models.synth.burn import burn
from models.synth.layout import RAIL_OFFSETS, Track
from models.synth.noise import band_coverage, stripe_coverage

BAND_M = 2.2  # half-width of the painted track band (the widest bed, 3.4 m, and a pixel)
SLEEPER_PERIOD_M = 0.6
SLEEPER_HALF_LENGTH_M = 1.3


def _groups(bands: list[Polygon]) -> list[list[int]]:
    """Greedy colouring: tracks whose bands overlap go to different passes."""
    tree = STRtree(bands)
    group_of: dict[int, int] = {}
    for i, band in enumerate(bands):
        taken = {group_of[j] for j in tree.query(band, predicate="intersects") if j in group_of}
        g = 0
        while g in taken:
            g += 1
        group_of[i] = g
    groups: dict[int, list[int]] = {}
    for i, g in group_of.items():
        groups.setdefault(g, []).append(i)
    return list(groups.values())


def track_alphas(
    tracks: list[Track],
    transform_m: Affine,
    shape: tuple[int, int],
    pixel_size_m: float,
    bed_tones: np.ndarray,
    bed_width_m: float,
) -> dict[str, np.ndarray]:
    """Per-pixel coverage (0..1) of ``rail``, ``rail_shadow``, ``sleeper``, ``middle`` (between the
    rails) and ``bed`` (the ``bed_width_m`` wide band of the track's own ballast), plus ``wood`` (1
    where the sleepers are wooden) and ``bed_tone`` (``bed_tones`` of the track there, 0 off tracks)."""
    h, w = shape
    keys = ("rail", "rail_shadow", "sleeper", "middle", "bed", "wood", "bed_tone")
    out = {k: np.zeros(shape, dtype=np.float32) for k in keys}
    tones = np.asarray(bed_tones, np.float32)
    x0, y1 = transform_m @ (0, 0)
    x1, y0 = transform_m @ (w, h)
    view = box(min(x0, x1) - 3, min(y0, y1) - 3, max(x0, x1) + 3, max(y0, y1) + 3)
    segs: list[tuple[np.ndarray, np.ndarray, float, int]] = []  # start, unit direction, s at start, track
    seg_polys: list[list[tuple[dict, int]]] = []
    bands: list[Polygon] = []
    for ti, track in enumerate(tracks):
        part = track.line.intersection(view)
        parts = [g for g in getattr(part, "geoms", [part]) if g.geom_type == "LineString" and not g.is_empty]
        polys: list[tuple[dict, int]] = []
        for line in parts:
            pts = np.asarray(line.coords)
            lengths = np.hypot(*np.diff(pts, axis=0).T)
            s0 = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
            for k in range(len(pts) - 1):
                if lengths[k] < 1e-6:
                    continue
                d = (pts[k + 1] - pts[k]) / lengths[k]
                ext = 0.4  # overlap neighbours a little so joints have no gaps
                a, b = pts[k] - d * ext, pts[k + 1] + d * ext
                n = np.array([-d[1], d[0]]) * BAND_M
                ring = [a - n, b - n, b + n, a + n, a - n]
                polys.append(({"type": "Polygon", "coordinates": [[tuple(q) for q in ring]]}, len(segs) + 1))
                segs.append((pts[k], d, float(s0[k]), ti))
        seg_polys.append(polys)
        band = [line.buffer(BAND_M + 0.4, cap_style="flat") for line in parts]
        bands.append(shapely.union_all(band) if band else Polygon())
    if not segs:
        return out
    start = np.array([s[0] for s in segs])
    direction = np.array([s[1] for s in segs])
    s_start = np.array([s[2] for s in segs])
    track_of = np.array([s[3] for s in segs])
    for group in _groups(bands):
        shapes = [sp for ti in group for sp in seg_polys[ti]]
        if not shapes:
            continue
        ids = burn(shapes, shape, transform_m)
        rr, cc = np.nonzero(ids)
        if rr.size == 0:
            continue
        seg = ids[rr, cc] - 1
        px = transform_m.c + (cc + 0.5) * transform_m.a
        py = transform_m.f + (rr + 0.5) * transform_m.e
        rx, ry = px - start[seg, 0], py - start[seg, 1]
        dx, dy = direction[seg, 0], direction[seg, 1]
        s = s_start[seg] + rx * dx + ry * dy
        d = -rx * dy + ry * dx
        _accumulate(out, rr, cc, s, d, track_of[seg], tracks, pixel_size_m, tones, bed_width_m)
    return out


def _accumulate(out, rr, cc, s, d, track_idx, tracks: list[Track], p: float, tones, bed_width_m: float) -> None:
    foot = p * 1.1
    bed = band_coverage(d, 0.0, bed_width_m, foot)
    closer = bed > out["bed"][rr, cc]
    out["bed_tone"][rr[closer], cc[closer]] = tones[track_idx[closer]]
    sleeper = stripe_coverage(s, SLEEPER_PERIOD_M, 0.26, foot) * band_coverage(d, 0.0, 2 * SLEEPER_HALF_LENGTH_M, foot)
    middle = band_coverage(d, 0.0, 1.45, foot)
    rail = np.zeros_like(d)
    shadow = np.zeros_like(d)
    for gauge, offsets in RAIL_OFFSETS.items():
        sel = np.array([tracks[t].gauge == gauge for t in range(len(tracks))])[track_idx]
        if not sel.any():
            continue
        for r in offsets:
            rail[sel] = np.maximum(rail[sel], band_coverage(d[sel], r, 0.1, foot))
            shadow[sel] = np.maximum(shadow[sel], band_coverage(d[sel], r + math.copysign(0.12, r), 0.14, foot))
    wood = np.array([tracks[t].sleeper == "wood" for t in range(len(tracks))], dtype=np.float32)[track_idx]
    pairs = (("rail", rail), ("rail_shadow", shadow), ("sleeper", sleeper), ("middle", middle), ("bed", bed), ("wood", wood))
    for key, val in pairs:
        cur = out[key][rr, cc]
        out[key][rr, cc] = np.maximum(cur, val)
