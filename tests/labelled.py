"""A tiny labelled scene for training tests: tracks with trains of 'cars' and a few tarps, on a
noisy field, in UTM at 0.5 m; the labels GeoJSON is written in another CRS (WGS 84 or, with an
old-style ``crs`` member, Web Mercator) to exercise reprojection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import LineString, box, mapping

from service.rasters import write_geotiff

UTM = "EPSG:32652"
ORIGIN = (640000.0, 4698000.0)
CAR_COLOURS = ((200, 200, 200), (150, 60, 40), (60, 80, 150))


def make_labelled_scene(tif: Path, labels: Path, *, seed: int = 0, size: int = 256,
                        labels_crs: str = "EPSG:4326") -> dict[str, int]:
    """Write the scene and its labels; returns the number of objects per class."""
    rng = np.random.default_rng(seed)
    img = (rng.normal(0, 6, (3, size, size)) + np.array([120, 115, 100])[:, None, None]).clip(0, 255)
    t = Affine(0.5, 0, ORIGIN[0], 0, -0.5, ORIGIN[1])
    feats: list[tuple[str, object]] = []
    rows = [size * 60 // 256, size * 140 // 256, size * 200 // 256]
    for r in rows:
        img[:, r - 2 : r + 2, :] = np.array([90, 85, 80])[:, None, None]  # ballast under the rails
        feats.append(("track", LineString([t @ (0, r), t @ (size, r)])))
    for r in rows[:2]:
        c = 10 + int(rng.integers(0, 8))
        while c + 28 < size - 10:
            img[:, r - 3 : r + 3, c : c + 28] = np.array(CAR_COLOURS[int(rng.integers(3))])[:, None, None]
            feats.append(("railcar", box(*(t @ (c, r + 3)), *(t @ (c + 28, r - 3)))))
            c += 30
    for c, r, w, h in [(40, rows[0] + 35, 12, 10), (100, rows[0] + 30, 16, 14), (180, rows[2] + 25, 10, 10)]:
        img[:, r : r + h, c : c + w] = np.array([40, 120, 60])[:, None, None]
        feats.append(("tarped_cargo", box(*(t @ (c, r + h)), *(t @ (c + w, r)))))
    write_geotiff(tif, img.astype(np.uint8), transform=t, crs=UTM)
    to_labels = Transformer.from_crs(UTM, labels_crs, always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(to_labels.transform(coords[:, 0], coords[:, 1]))

    doc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"class": cls}, "geometry": mapping(shapely.transform(g, project))}
        for cls, g in feats
    ]}
    if labels_crs != "EPSG:4326":
        code = labels_crs.split(":")[1]
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}}
    Path(labels).write_text(json.dumps(doc))
    counts: dict[str, int] = {}
    for cls, _ in feats:
        counts[cls] = counts.get(cls, 0) + 1
    return counts
