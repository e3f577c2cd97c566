"""Rail yards drawn plainly, by a renderer that shares nothing with the data engine: a check on
scenes drawn differently from the ones the model learnt on.

The issue warns that railsight is judged on scenes it does not have, "drawn differently from
yours". ``models.shifted_scenes`` shifts the engine's own images; this draws new ones in another
style, the way someone writing their own test scenes might: flat-coloured box cars on plain ballast
bands with two rails, cars with or without a shadow, a hardstand of tarps, roads and sheds, on
textured ground, in UTM, EPSG:3857 or EPSG:4326. Each scene is written as ``railsight eval`` reads
one (NAME.tif and NAME.geojson, truth in the output contract, conditions in ``conditions``):

    python -m models.plain_yards runs/eval/plain --n 12 --seed 0
    railsight eval --scenes runs/eval/plain

Nothing of the engine (``models.synth``) is used: its layout, materials, shading and sensor model
are what this is meant to be independent of.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from rasterio import features
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, Polygon, box

from service.geojson import GeometryMapper, geometry_members
from service.rasters import write_geotiff

SIZE_PX = 1024
SUPERSAMPLE = 3  # drawn at 3x and averaged down, so edges are soft as a sensor's are
PIXEL_SIZES_M = (0.3, 0.5, 0.75)
CRS_KINDS = ("utm", "EPSG:3857", "EPSG:4326")
ROOF_COLOURS = ((150, 70, 45), (110, 110, 112), (205, 205, 200), (60, 62, 66), (45, 80, 140), (50, 100, 60),
                (170, 160, 140), (120, 40, 35))
TARP_COLOURS = ((40, 90, 170), (60, 120, 70), (150, 150, 150), (140, 110, 60), (200, 180, 60))
GROUNDS = {"grass": (95, 120, 70), "soil": (140, 120, 95), "dry": (175, 160, 130), "snow": (225, 228, 232)}


@dataclass
class Drawn:
    """One scene in pixel coordinates of the final grid: the image and the truth geometries."""

    image: np.ndarray  # (3, H, W) uint8
    railcars: list[Polygon]
    tarps: list[Polygon]
    tracks: list[LineString]
    conditions: dict


class _Canvas:
    """An RGB float image at ``SUPERSAMPLE`` times the grid, painted with polygons given in grid pixels."""

    def __init__(self, size: int, ground: np.ndarray) -> None:
        self.size = size * SUPERSAMPLE
        self.rgb = ground
        self.scale = Affine.scale(1.0 / SUPERSAMPLE)  # canvas pixel -> grid pixel

    def paint(self, shapes: list, colour, alpha: float = 1.0) -> None:
        if not shapes:
            return
        mask = features.rasterize(shapes, out_shape=(self.size, self.size), transform=self.scale, dtype="uint8") > 0
        c = np.asarray(colour, dtype=np.float32)[:, None]
        self.rgb[:, mask] = (1 - alpha) * self.rgb[:, mask] + alpha * c

    def image(self, rng: np.random.Generator) -> np.ndarray:
        s = SUPERSAMPLE
        small = self.rgb.reshape(3, self.size // s, s, self.size // s, s).mean(axis=(2, 4))
        small += rng.normal(0, 3.0, small.shape)
        return np.clip(small, 0, 255).astype(np.uint8)


def draw_scene(seed: int, size: int = SIZE_PX) -> Drawn:
    """One yard of ``size`` px: parallel tracks at a random angle through the middle, trains on them,
    a road on one side, sheds and a hardstand of tarps on the other."""
    rng = np.random.default_rng(seed)
    px = float(rng.choice(PIXEL_SIZES_M))
    ground_name = str(rng.choice(list(GROUNDS)))
    ground = np.array(GROUNDS[ground_name], dtype=np.float32)[:, None, None]
    n = size * SUPERSAMPLE
    # mostly brightness, a little hue: ground patches, not confetti
    cells = -(-n // 48)
    coarse = rng.normal(0, 12, (1, cells, cells)) + rng.normal(0, 4, (3, cells, cells))
    texture = ndimage.zoom(coarse.astype(np.float32), (1, 48, 48), order=1)[:, :n, :n]
    canvas = _Canvas(size, ground + texture)
    metre = 1.0 / px  # grid pixels per metre
    angle = float(rng.uniform(0, 180))
    centre = (size / 2, size / 2)

    def placed(geom):  # yard frame (metres, x along the tracks) -> grid pixels
        g = affinity.rotate(affinity.scale(geom, metre, metre, origin=(0, 0)), angle, origin=(0, 0))
        return affinity.translate(g, *centre)

    half = size * px * 0.75  # the yard frame reaches past the scene on every side at any angle
    spacing = float(rng.uniform(4.5, 5.5))
    n_tracks = int(rng.integers(6, 20))
    first = -spacing * (n_tracks - 1) / 2 + float(rng.uniform(-40, 40))
    ys = [first + k * spacing for k in range(n_tracks)]
    scene_box = box(0, 0, size, size)
    # roads and sheds beside the yard
    road_y = ys[-1] + float(rng.uniform(15, 40))
    canvas.paint([placed(box(-half, road_y, half, road_y + 7))], (85, 85, 88))
    sheds = []
    for _ in range(int(rng.integers(1, 5))):
        x0, w, h = float(rng.uniform(-half, half)), float(rng.uniform(20, 80)), float(rng.uniform(10, 25))
        sheds.append(placed(box(x0, ys[0] - 12 - h, x0 + w, ys[0] - 12)))
    canvas.paint(sheds, (int(rng.integers(120, 190)),) * 3)
    # ballast, sleepers and rails
    canvas.paint([placed(box(-half, y - 1.6, half, y + 1.6)) for y in ys], (112, 104, 96))
    for y in ys:
        sleepers = [placed(box(x, y - 1.3, x + 0.25, y + 1.3)) for x in np.arange(-half, half, 0.65)]
        canvas.paint(sleepers, (80, 70, 60), alpha=0.5)
    canvas.paint([placed(box(-half, y + d - 0.04, half, y + d + 0.04)) for y in ys for d in (-0.72, 0.72)],
                 (175, 175, 180))
    tracks = [t for t in (placed(LineString([(-half, y), (half, y)])).intersection(scene_box) for y in ys)
              if isinstance(t, LineString) and t.length > 0]
    # consists of box cars, some with shadows on one side
    shadow_dx = float(rng.uniform(-1.5, 1.5)) if rng.random() < 0.6 else 0.0  # its sign: which side
    railcars: list[Polygon] = []
    shadows: list[Polygon] = []
    cars_by_colour: dict[tuple[int, int, int], list[Polygon]] = {}
    for y in ys:
        x = float(rng.uniform(-half, 0))
        while x < half:
            if rng.random() < 0.08:  # between trains
                x += float(rng.uniform(20, 150))
                continue
            length, width = float(rng.uniform(10, 22)), float(rng.uniform(2.6, 3.1))
            car = box(x, y - width / 2, x + length, y + width / 2)
            x += length + float(rng.uniform(0.8, 1.6))
            footprint = placed(car)
            if not scene_box.contains(footprint.centroid):
                continue
            colour = ROOF_COLOURS[int(rng.integers(len(ROOF_COLOURS)))]
            railcars.append(footprint.intersection(scene_box))
            cars_by_colour.setdefault(colour, []).append(footprint)
            if shadow_dx:
                shadows.append(placed(affinity.translate(car, 0.0, math.copysign(width * 0.8, shadow_dx))))
    canvas.paint(shadows, (30, 30, 35), alpha=0.55)
    for colour, cars in cars_by_colour.items():
        canvas.paint(cars, colour)
        canvas.paint([c.buffer(-0.5 * metre) for c in cars], np.asarray(colour) * 1.1)
    # a hardstand with tarped cargo
    hx, hy = float(rng.uniform(-half / 2, half / 2)), ys[0] - 70
    canvas.paint([placed(box(hx, hy, hx + 60, hy + 45))], (150, 148, 140))
    tarps: list[Polygon] = []
    for _ in range(int(rng.integers(3, 14))):
        w, h = float(rng.uniform(2.5, 10)), float(rng.uniform(2, 6))
        x0, y0 = hx + float(rng.uniform(1, 59 - w)), hy + float(rng.uniform(1, 44 - h))
        tarp = placed(box(x0, y0, x0 + w, y0 + h))
        if any(tarp.intersects(t) for t in tarps) or not scene_box.contains(tarp.centroid):
            continue
        canvas.paint([tarp], TARP_COLOURS[int(rng.integers(len(TARP_COLOURS)))])
        tarps.append(tarp.intersection(scene_box))
    conditions = {"renderer": "plain_yards", "pixel_size_m": px, "season": ground_name,
                  "shadows": bool(shadow_dx), "jpeg_quality": None}
    return Drawn(canvas.image(rng), railcars, tarps, tracks, conditions)


def georeference(kind: str, px: float, size: int, rng: np.random.Generator) -> tuple[Affine, CRS]:
    """A grid transform in ``kind`` whose pixels are about ``px`` metres on the ground, somewhere
    between 30 and 55 degrees north."""
    lon, lat = float(rng.uniform(-10, 140)), float(rng.uniform(30, 55))
    if kind == "utm":
        crs = CRS.from_epsg(32600 + int((lon + 180) // 6) + 1)
        step_x, step_y = px, px
    elif kind == "EPSG:3857":
        crs, step_x = CRS.from_user_input(kind), px / math.cos(math.radians(lat))
        step_y = step_x
    else:
        crs = CRS.from_user_input(kind)
        step_x, step_y = px / (111_320 * math.cos(math.radians(lat))), px / 110_574
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    return Affine(step_x, 0, x - step_x * size / 2, 0, -step_y, y + step_y * size / 2), crs


def truth(drawn: Drawn, transform: Affine, crs: CRS) -> dict:
    """The output contract's FeatureCollection of the scene's truth, in WGS 84, mapped from grid
    pixels the way the pipeline maps its own features (``service.geojson.GeometryMapper``)."""
    classes, geoms = [], []
    for cls, drawn_geoms in (("railcar", drawn.railcars), ("tarped_cargo", drawn.tarps), ("track", drawn.tracks)):
        for g in drawn_geoms:
            if not g.is_empty and g.geom_type in ("Polygon", "LineString"):
                classes.append(cls)
                geoms.append(g)
    members = geometry_members(GeometryMapper(transform, crs.to_wkt()).to_output(np.array(geoms, dtype=object)))
    feats = [{"type": "Feature", "id": fid, "properties": {"class": cls, "id": fid, "confidence": 1.0}, "geometry": m}
             for fid, (cls, m) in enumerate(zip(classes, members, strict=True), start=1)]
    counts = {c: classes.count(c) for c in ("railcar", "tarped_cargo", "track")}
    return {"type": "FeatureCollection", "features": feats,
            "summary": {"counts": counts, "crs": crs.to_string(), "source": "models.plain_yards"},
            "conditions": drawn.conditions}


def write(out: Path, n: int, seed: int, size: int = SIZE_PX) -> list[str]:
    """Scenes ``plain_0000`` .. of ``size`` px under ``out``; the CRS goes round UTM, EPSG:3857 and
    EPSG:4326."""
    names = []
    for i in range(n):
        scene_rng = np.random.default_rng([seed, i])
        drawn = draw_scene(int(scene_rng.integers(2**62)), size)
        kind = CRS_KINDS[i % len(CRS_KINDS)]
        transform, crs = georeference(kind, drawn.conditions["pixel_size_m"], drawn.image.shape[-1], scene_rng)
        drawn.conditions["crs"] = kind
        name = f"plain_{i:04d}"
        write_geotiff(out / f"{name}.tif", drawn.image, transform=transform, crs=crs)
        (out / f"{name}.geojson").write_text(json.dumps(truth(drawn, transform, crs)))
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.plain_yards", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write NAME.tif and NAME.geojson into")
    parser.add_argument("--n", type=int, default=12, help="number of scenes (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--size", type=int, default=SIZE_PX, help=f"scene side in pixels (default {SIZE_PX})")
    args = parser.parse_args(argv)
    for name, value, least in (("--n", args.n, 1), ("--size", args.size, 128)):
        if value < least:
            print(f"{parser.prog}: error: {name} must be at least {least}, got {value}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    names = write(args.out, args.n, args.seed, args.size)
    print(f"wrote {len(names)} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
