"""Small GeoTIFFs made on the fly for tests: a grey field with coloured shapes the oracle knows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from affine import Affine

from service.rasters import write_geotiff
from tests.oracle_model import COLOURS

# Tumangang, UTM 52N: where the analysts look.
UTM = "EPSG:32652"
UTM_ORIGIN = (640000.0, 4698000.0)
LONLAT_ORIGIN = (130.60, 42.42)


def blank(width: int, height: int, value: int = 110) -> np.ndarray:
    return np.full((3, height, width), value, dtype=np.uint8)


def paint(image: np.ndarray, cls: str, col: int, row: int, w: int, h: int) -> None:
    image[:, row : row + h, col : col + w] = np.array(COLOURS[cls], dtype=np.uint8)[:, None, None]


def train_of_cars(image: np.ndarray, col: int, row: int, n: int, length: int = 28, width: int = 6, gap: int = 2):
    """``n`` horizontal railcars nose to tail (28 x 6 px = 14 x 3 m at 0.5 m, gaps of 1 m).
    Returns their pixel boxes."""
    boxes = []
    for i in range(n):
        c = col + i * (length + gap)
        paint(image, "railcar", c, row, length, width)
        boxes.append((c, row, length, width))
    return boxes


def transform_for(crs: str, pixel_size_m: float, origin: tuple[float, float] | None = None) -> Affine:
    """North-up transform with ``pixel_size_m`` ground pixels in UTM, EPSG:4326 or EPSG:3857."""
    if crs == "EPSG:4326":
        lon, lat = origin or LONLAT_ORIGIN
        dlat = pixel_size_m / 111_320.0
        dlon = pixel_size_m / (111_320.0 * math.cos(math.radians(lat)))
        return Affine(dlon, 0, lon, 0, -dlat, lat)
    if crs == "EPSG:3857":
        lat = LONLAT_ORIGIN[1]
        scale = 1.0 / math.cos(math.radians(lat))  # Web Mercator metres are stretched by 1/cos(lat)
        x = 6378137.0 * math.radians(LONLAT_ORIGIN[0])
        y = 6378137.0 * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
        return Affine(pixel_size_m * scale, 0, x, 0, -pixel_size_m * scale, y)
    x, y = origin or UTM_ORIGIN
    return Affine(pixel_size_m, 0, x, 0, -pixel_size_m, y)


def write(path: Path, image: np.ndarray, *, crs: str | None = UTM, pixel_size_m: float = 0.5,
          mask: np.ndarray | None = None, nodata: float | None = None) -> Path:
    transform = transform_for(crs, pixel_size_m) if crs else None
    return write_geotiff(path, image, transform=transform, crs=crs, mask=mask, nodata=nodata)
