"""Painting a scene's pixels: ground, surfaces, tracks, prims, cast shadows, then the lean of a
scene seen off nadir (``models.synth.lean``).

The output is linear-ish display RGB in 0..1, before any sensor effect (see ``sensor``). Every
polygon is burnt with ``rasterio.features.rasterize`` on the scene grid (pixel-centre rule), the
same call the labels use, so a labelled object's pixels are exactly the pixels painted as it.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
import shapely.affinity
from affine import Affine

from models.synth import shading
from models.synth.burn import boxes_geojson, burn
from models.synth.colours import GROUND, jitter, mix
from models.synth.layout import Layout
from models.synth.lean import lean_pixels, lean_prims
from models.synth.noise import ValueNoise, fractal, stripe_coverage, value_noise
from models.synth.prims import Prim, Surface, box_corners
from models.synth.shadows import cast_shadows
from models.synth.trackpaint import track_alphas

MATERIALS = ("field", "concrete", "asphalt", "gravel", "ballast", "platform", "marking")
SURFACE_ORDER = {m: i for i, m in enumerate(MATERIALS)}


def _pixel_xy(transform_m: Affine, rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (transform_m.c + (cc + 0.5) * transform_m.a).astype(np.float32), (
        transform_m.f + (rr + 0.5) * transform_m.e
    ).astype(np.float32)


def _ground(rng, shape, p: float, season: str) -> np.ndarray:
    """Grass (or snow) and bare soil mixed by large patches, with mid-scale tufts and fine grain."""
    g = GROUND[season]
    patches = fractal(rng, shape, 45.0 / p, octaves=2)
    mid = value_noise(rng, shape, 5.0 / p)
    fine = value_noise(rng, shape, 0.6 / p)
    snow = season == "snow"
    soil_share = float(rng.uniform(0.03, 0.35) if snow else rng.uniform(0.1, 0.6))
    sharp = 10.0 if snow else 3.0
    t = np.clip((patches + 0.12 * mid - (0.5 - soil_share)) * sharp, 0.0, 1.0)
    m = 0.5 + 0.5 * mid
    shade = 1 + 0.06 * fine + 0.04 * patches
    out = np.empty((3, *shape), np.float32)
    for k in range(3):
        grass = g["grass"][0][k] + (g["grass"][1][k] - g["grass"][0][k]) * m
        soil = g["soil"][0][k] + (g["soil"][1][k] - g["soil"][0][k]) * m
        out[k] = (grass + (soil - grass) * t) * shade
    return out


def _material_colours(rng, season: str) -> dict[str, np.ndarray]:
    snow = season == "snow"
    ballast = mix((0.55, 0.54, 0.52), (0.52, 0.44, 0.37), float(rng.uniform(0, 1)))
    ballast = jitter(rng, mix(ballast, (0.36, 0.33, 0.30), float(rng.uniform(0, 0.45))), 0.05)
    field_a, field_b = {
        "summer": ((0.30, 0.42, 0.20), (0.62, 0.58, 0.36)),
        "spring": ((0.36, 0.47, 0.24), (0.46, 0.38, 0.28)),
        "autumn": ((0.46, 0.37, 0.27), (0.58, 0.52, 0.36)),
        "winter": ((0.48, 0.44, 0.37), (0.40, 0.35, 0.29)),
        "snow": ((0.88, 0.89, 0.91), (0.78, 0.79, 0.82)),
        "arid": ((0.70, 0.60, 0.45), (0.62, 0.53, 0.40)),
    }[season]
    colours = {
        "field": (field_a, field_b),
        "concrete": jitter(rng, (0.64, 0.63, 0.61), 0.05),
        "asphalt": jitter(rng, (0.29, 0.29, 0.30) if not snow else (0.40, 0.40, 0.42), 0.06),
        "gravel": jitter(rng, (0.58, 0.54, 0.48), 0.05),
        "ballast": ballast,
        "platform": jitter(rng, (0.70, 0.69, 0.66), 0.04),
        "marking": (0.88, 0.88, 0.86),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in colours.items()}


def _paint_surfaces(rgb, surfaces: list[Surface], transform_m, p, colours, noise, season: str, rng) -> np.ndarray:
    """Burn surfaces in material order; returns the material index map (-1 for bare ground)."""
    shape = rgb.shape[1:]
    ordered = sorted(range(len(surfaces)), key=lambda i: SURFACE_ORDER[surfaces[i].material])
    ids = burn(((surfaces[i].geometry, i + 1) for i in ordered), shape, transform_m)
    rr, cc = np.nonzero(ids)
    if rr.size == 0:
        return np.full(shape, -1, dtype=np.int16)
    sid = ids[rr, cc] - 1
    n = len(surfaces)
    codes = np.array([SURFACE_ORDER[s.material] for s in surfaces], dtype=np.int16)
    material = codes[sid]
    # per surface: base colour and texture strength, then one pass over the pixels
    base = np.empty((n, 3), np.float32)
    amp = np.empty(n, np.float32)
    a_field, b_field = colours["field"]
    strength = {"concrete": 0.05, "asphalt": 0.06, "gravel": 0.08, "ballast": 0.12, "platform": 0.04, "marking": 0.02,
                "field": 0.05}  # fmt: skip
    for i, surf in enumerate(surfaces):
        if surf.material == "field":
            t = min(max(0.5 + 0.5 * surf.tone, 0.0), 1.0)
            base[i] = a_field * (1 - t) + b_field * t
        elif surf.material == "marking":  # a thin line drawn a pixel wide: its share of the pixel
            share = 1.0 + min(surf.tone, 0.0)
            base[i] = colours["marking"] * share + colours["asphalt"] * (1 - share)
        else:
            base[i] = colours[surf.material] * (1 + 0.05 * surf.tone)
        amp[i] = strength[surf.material]
    mid, fine = noise["mid"].at(rr, cc), noise["fine"].at(rr, cc)
    k = amp[sid]
    shade = 1 + k * (0.5 * mid + fine)
    fields = np.flatnonzero(material == SURFACE_ORDER["field"])
    if fields.size:  # crop rows
        x, y = _pixel_xy(transform_m, rr[fields], cc[fields])
        ang = np.array([s.angle for s in surfaces], dtype=np.float32)[sid[fields]]
        period = np.maximum(np.array([s.period for s in surfaces], dtype=np.float32)[sid[fields]], 0.5)
        rows = np.sin(2 * np.pi * (-x * np.sin(ang) + y * np.cos(ang)) / period)
        shade[fields] += np.where(period > p / 0.6, 0.05 * rows, 0.0) - 0.02
    col = base[sid] * shade[:, None]
    weeds = float(rng.uniform(0.0, 0.8)) if rng.random() < 0.6 else 0.0
    ballast = np.flatnonzero(material == SURFACE_ORDER["ballast"])
    if weeds > 0 and ballast.size:  # old yards: grass and weeds in the ballast
        cover = np.clip((0.6 * mid[ballast] + 0.4 * fine[ballast] + weeds - 0.7) * 2.5, 0.0, 1.0)
        grass = np.asarray(GROUND[season]["grass"][0], np.float32)
        col[ballast] = col[ballast] * (1 - cover[:, None]) + grass * (0.9 + 0.2 * fine[ballast, None]) * cover[:, None]
    if season == "snow":
        cover = np.clip(0.75 + 0.5 * mid + 0.1 * fine, 0, 1)
        cover = np.where(material == SURFACE_ORDER["asphalt"], 0.15 * cover, cover)
        col = col * (1 - cover[:, None]) + np.array([0.9, 0.91, 0.94], np.float32) * cover[:, None]
    rgb[:, rr, cc] = col.T
    out = np.full(shape, -1, dtype=np.int16)
    out[rr, cc] = material
    return out


def _paint_tracks(rgb, layout: Layout, transform_m, p, cond, rng) -> None:
    snow = cond["season"] == "snow"
    # Each track's own bed (sleepers and the ballast between them) is lighter or darker than the
    # ballast between tracks: fresh or dirty ballast. On real yards at 0.5 m that makes every track a
    # distinct band about 3 m wide, the width of a railcar, which an engine of faint tracks on even
    # ballast never showed (the Muttenz picture's empty tracks were called railcars).
    yard_tone = float(rng.uniform(-0.35, 0.0) if snow else rng.uniform(-0.3, 0.35))
    tones = yard_tone + rng.normal(0.0, 0.08, size=len(layout.tracks))
    bed_width = float(rng.uniform(2.6, 3.4))
    alphas = track_alphas(layout.tracks, transform_m, rgb.shape[1:], p, tones, bed_width)
    mid_col = np.asarray(jitter(rng, (0.24, 0.20, 0.17), 0.1), np.float32)[:, None, None]
    conc = np.asarray(jitter(rng, (0.76, 0.75, 0.72), 0.05), np.float32)[:, None, None]
    wood = np.asarray(jitter(rng, (0.30, 0.24, 0.19), 0.08), np.float32)[:, None, None]
    rail_col = np.asarray(jitter(rng, (0.66, 0.65, 0.64) if rng.random() < 0.6 else (0.40, 0.30, 0.24), 0.05), np.float32)
    dark = np.asarray((0.12, 0.11, 0.10), np.float32)[:, None, None]
    # The oily strip between the rails: darkest on busy sidings, hardly there on many real yards (the
    # Muttenz picture's empty tracks are light sleepers and thin rails on grey ballast). A dark strip
    # on every track taught the model "dark 3 m band = track, anything else on it = railcar".
    k_mid = float(rng.uniform(0.1, 0.4)) if snow else float(rng.uniform(0.0, 0.6))
    k_sl = 0.25 if snow else float(rng.uniform(0.55, 0.9))
    rr, cc = np.nonzero(alphas["bed"] + alphas["rail"] + alphas["rail_shadow"])
    if rr.size == 0:
        return
    a = {k: v[rr, cc][None] for k, v in alphas.items()}
    px = rgb[:, rr, cc] * (1 + a["bed_tone"] * a["bed"])
    px = px * (1 - k_mid * a["middle"]) + mid_col[:, :, 0] * k_mid * a["middle"]
    sleeper_col = conc[:, :, 0] * (1 - a["wood"]) + wood[:, :, 0] * a["wood"]
    px = px * (1 - k_sl * a["sleeper"]) + sleeper_col * k_sl * a["sleeper"]
    px = px * (1 - 0.85 * a["rail_shadow"]) + dark[:, :, 0] * 0.85 * a["rail_shadow"]
    px = px * (1 - a["rail"]) + rail_col[:, None] * a["rail"]
    rgb[:, rr, cc] = px


def _prim_arrays(prims: list[Prim]) -> dict[str, np.ndarray]:
    return {
        "cx": np.array([q.cx for q in prims], np.float64),
        "cy": np.array([q.cy for q in prims], np.float64),
        "cos": np.array([math.cos(q.angle) for q in prims], np.float32),
        "sin": np.array([math.sin(q.angle) for q in prims], np.float32),
        "hl": np.array([q.length / 2 for q in prims], np.float32),
        "hw": np.array([q.width / 2 for q in prims], np.float32),
        "colour": np.array([q.colour for q in prims], np.float32).reshape(-1, 3),
        "style": np.array([shading_index(q.style) for q in prims], np.int16),
        "height": np.array([q.height for q in prims], np.float32),
        "params": np.array([q.params for q in prims], np.float32).reshape(-1, 4),
        "dirt": np.array([q.dirt for q in prims], np.float32),
    }


STYLE_NAMES = ("flat", "ribs", "long_ribs", "cylinder", "gable", "tarp", "crown", "vehicle", "load")


def shading_index(style: str) -> int:
    return STYLE_NAMES.index(style)


def paint_prims(rgb, heights, prims: list[Prim], transform_m, p, sun, noise) -> np.ndarray:
    """Paint prims in list order (later on top); fill ``heights``; returns the prim index map
    (prim number + 1, 0 where none)."""
    shape = rgb.shape[1:]
    if not prims:
        return np.zeros(shape, dtype=np.int32)
    arrays = _prim_arrays(prims)
    corners = box_corners(arrays["cx"], arrays["cy"], arrays["cos"], arrays["sin"], arrays["hl"], arrays["hw"])
    boxes = boxes_geojson(corners)
    idx = burn(((q.shape if q.shape is not None else boxes[i], i + 1) for i, q in enumerate(prims)), shape, transform_m)
    rr, cc = np.nonzero(idx)
    if rr.size == 0:
        return idx
    pid = idx[rr, cc] - 1
    x, y = _pixel_xy(transform_m, rr, cc)
    style = arrays["style"][pid]
    shade = np.ones(rr.size, np.float32)
    height = np.zeros(rr.size, np.float32)
    local_noise = {k: noise[k].at(rr, cc) for k in ("clump", "wrinkle", "fine")}
    tarp_sel = None
    for name, painter in shading.PAINTERS.items():
        sel = style == shading_index(name)
        if not sel.any():
            continue
        ps = shading.PixelSet(x[sel], y[sel], pid[sel], arrays, p)
        sub_noise = {k: v[sel] for k, v in local_noise.items()}
        shade[sel], height[sel] = painter(ps, sun, sub_noise)
    sel = style == shading_index("tarp")
    if sel.any():
        tarp_sel = sel
        ps = shading.PixelSet(x[sel], y[sel], pid[sel], arrays, p)
        z = np.zeros(shape, np.float32)
        height[sel] = shading.tarp_height(ps, {k: v[sel] for k, v in local_noise.items()})
        z[rr[sel], cc[sel]] = height[sel]
        gy, gx = np.gradient(z)
        r2, c2 = rr[sel], cc[sel]
        nx, ny = -gx[r2, c2] / p, gy[r2, c2] / p  # rows run south: d/dy = -d/drow
        norm = np.sqrt(nx**2 + ny**2 + 1.0)
        shade[sel] = shading.lambert(nx / norm, ny / norm, 1.0 / norm, sun, ambient=0.35)
        strap = ps.params[:, 3]
        has = strap > 0
        if has.any():  # tie-down straps across the tarp
            sub = np.flatnonzero(sel)[has]
            cover = stripe_coverage(ps.u[has] / strap[has], 1.0, 0.05 / strap[has], p / strap[has])
            shade[sub] *= 1 - 0.6 * cover
    col = arrays["colour"][pid] * shade[:, None]
    col *= 1 + arrays["dirt"][pid, None] * (local_noise["clump"] + local_noise["fine"])[:, None]
    if tarp_sel is not None:  # cloth sheen
        col[tarp_sel] += 0.04 * np.clip(shade[tarp_sel, None] - 1.0, 0, None)
    rgb[:, rr, cc] = np.clip(col, 0.0, 1.2).T
    heights[rr, cc] = np.maximum(heights[rr, cc], height)
    return idx


def overhead_shadow(prims: list[Prim], shape: tuple[int, int], transform_m, cond: dict) -> np.ndarray:
    """The shadow floating prims (portal beams) throw on the ground: their footprint moved
    ``height / tan(elevation)`` away from the sun."""
    if not prims:
        return np.zeros(shape, dtype=bool)
    az, el = math.radians(cond["sun_azimuth_deg"]), math.radians(max(cond["sun_elevation_deg"], 1.0))
    moved = []
    for q in prims:
        d = q.height / math.tan(el)
        moved.append((shapely.affinity.translate(q.polygon, -math.sin(az) * d, -math.cos(az) * d), 1))
    return burn(moved, shape, transform_m, dtype="uint8") > 0


def paint_overhead(rgb, prims: list[Prim], transform_m, p: float, cond: dict) -> None:
    """Paint floating prims flat on top, where a scene seen off nadir shows them (``models.synth.lean``)."""
    if not prims:
        return
    shapes = []
    for i, q in enumerate(prims):
        cols, rows = lean_pixels(cond, p, q.height)
        shapes.append((shapely.affinity.translate(q.polygon, cols * p, -rows * p), i + 1))
    ids = burn(shapes, rgb.shape[1:], transform_m)
    rr, cc = np.nonzero(ids)
    colours = np.array([q.colour for q in prims], np.float32).reshape(-1, 3)
    rgb[:, rr, cc] = colours[ids[rr, cc] - 1].T


def apply_shadows(rgb, heights, p: float, cond: dict, extra: np.ndarray | None = None) -> None:
    """Darken (and tint towards the blue skylight) every pixel the sun does not reach."""
    mask = cast_shadows(heights, p, cond["sun_elevation_deg"], cond["sun_azimuth_deg"])
    if extra is not None:
        mask |= extra
    tint = np.array([1.0, 1.03, 1.15], np.float32)
    shadow = np.clip((1 - float(cond["shadow_depth"])) * tint, 0, 1)
    rr, cc = np.nonzero(mask)
    rgb[:, rr, cc] *= shadow[:, None]


def paint_scene(
    rng: np.random.Generator,
    shape: tuple[int, int],
    transform_m: Affine,
    p: float,
    cond: dict,
    layout: Layout,
    surfaces: list[Surface],
    prims: list[Prim],
    platforms_height: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB (3, H, W) float32 in 0..1 and the prim index map."""
    season = cond["season"]
    rgb = _ground(rng, shape, p, season)
    noise = {
        "mid": ValueNoise(rng, shape, 4.0 / p),
        "fine": ValueNoise(rng, shape, 0.5 / p),
        "clump": ValueNoise(rng, shape, 1.1 / p),
        "wrinkle": ValueNoise(rng, shape, 1.8 / p),
    }
    colours = _material_colours(rng, season)
    _paint_surfaces(rgb, surfaces, transform_m, p, colours, noise, season, rng)
    _paint_tracks(rgb, layout, transform_m, p, cond, rng)
    heights = np.zeros(shape, np.float32)
    if layout.platforms:
        plat = burn(((g, 1) for g in layout.platforms), shape, transform_m, dtype="uint8")
        heights[plat > 0] = platforms_height
    sun = shading.sun_vector(cond["sun_elevation_deg"], cond["sun_azimuth_deg"])
    standing, overhead = [q for q in prims if not q.floating], [q for q in prims if q.floating]
    idx = paint_prims(rgb, heights, standing, transform_m, p, sun, noise)
    shadow = overhead_shadow(overhead, shape, transform_m, cond)
    leaning = bool(cond.get("off_nadir_deg"))
    if not leaning:  # under the shadows, as the engine drew them before it leaned
        paint_overhead(rgb, overhead, transform_m, p, cond)
    apply_shadows(rgb, heights, p, cond, shadow)
    if leaning:  # the prim index map stays the nadir one
        lean_prims(rgb, standing, transform_m, p, cond, noise["fine"])
        paint_overhead(rgb, overhead, transform_m, p, cond)
    return rgb, idx
