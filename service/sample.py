"""The sample scene `railsight serve` offers in its ready-to-paste curl: a synthetic rail yard
(1024 x 1024 px, 0.5 m, UTM), made on first start rather than committed.

It comes from the synthetic data engine the model is trained on (``models.synth``), so the shipped
model has something real-looking to find. Should that engine fail, a plainer yard is drawn with
numpy instead (ballast, tracks, coupled railcars with shadows, tarps on a hardstand); the benchmark
uses that one too, being fast and dependency-free.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from affine import Affine

from service.rasters import write_geotiff

log = logging.getLogger(__name__)

SAMPLE_NAME = "sample-yard.tif"
SEED = 20231005
WIDTH, HEIGHT = 1024, 768
PIXEL_SIZE_M = 0.5
CRS = "EPSG:32652"
ORIGIN = (640_120.0, 4_698_640.0)  # about 42.42 N, 130.60 E
ROOF_COLOURS = [(178, 178, 172), (214, 214, 208), (128, 74, 52), (92, 92, 96), (70, 110, 150), (150, 60, 48)]


def ensure_sample(folder: Path) -> Path:
    """The sample scene under ``folder``, written (atomically) if it is not there yet."""
    path = Path(folder) / SAMPLE_NAME
    if path.exists():
        return path
    try:
        from models.synth.io import write_view
        from models.synth.scene import render_scene

        scene = render_scene(SEED, size_px=1024, pixel_size_m=PIXEL_SIZE_M, min_railcars=73, season="summer",
                             nodata=False)
        write_view(scene, path)  # first, as a vendor delivers it: the scene's presence says both are there
        write_geotiff(path, scene.image, transform=scene.transform, crs=scene.crs, mask=scene.valid)
    except Exception as exc:  # the engine is optional for serving; the plain drawing always works
        log.warning("synthetic engine unavailable for the sample scene (%s); drawing a plain one", exc)
        image = render_sample(seed=SEED)
        write_geotiff(path, image, transform=Affine(PIXEL_SIZE_M, 0, ORIGIN[0], 0, -PIXEL_SIZE_M, ORIGIN[1]), crs=CRS)
    return path


def render_sample(seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = (122, 116, 104)  # dry ground
    img += rng.normal(0, 6, (height, width, 1))
    # Hardstand (concrete) along the top, with tarped cargo in rows.
    img[20:150, 60:980] = (168, 166, 160)
    for i in range(9):
        col = 90 + i * 96 + int(rng.integers(-6, 6))
        row = 40 + int(rng.integers(0, 40))
        h, w = int(rng.integers(24, 44)), int(rng.integers(30, 60))
        tarp = (40, 90, 150) if i % 3 else (60, 120, 70)
        img[row + 3 : row + h + 3, col + 4 : col + w + 4] *= 0.55  # shadow
        img[row : row + h, col : col + w] = tarp
        img[row : row + h, col : col + w] += rng.normal(0, 5, (h, w, 1))
    # A track field: ballast bands 5.5 m (11 px) apart, two rails each, sleepers as faint stripes.
    tracks = list(range(220, 640, 11))
    for y in tracks:
        img[y - 4 : y + 5, :] = (112, 104, 94)
        img[y - 4 : y + 5, ::3] -= 8  # sleepers
        img[y - 2, :] = (70, 68, 66)
        img[y + 2, :] = (70, 68, 66)
    # Trains of coupled cars: 14 m x 3 m (28 x 6 px) with ~1 m gaps, shadows cast to the south-east.
    for k, y in enumerate(tracks):
        if rng.random() < 0.45:
            continue
        n_cars = int(rng.integers(3, 14))
        col = int(rng.integers(10, 300))
        colour = ROOF_COLOURS[k % len(ROOF_COLOURS)]
        for _ in range(n_cars):
            length = int(rng.integers(26, 40))
            if col + length >= width - 10:
                break
            img[y - 1 : y + 6, col + 3 : col + length + 3] *= 0.45
            img[y - 3 : y + 3, col : col + length] = colour
            img[y - 3 : y + 3, col : col + length] += rng.normal(0, 4, (6, length, 1))
            col += length + 2
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()
