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


def write_with_gcps(path: Path, image: np.ndarray, transform: Affine, crs: str = UTM, *, bend_px: float = 0.0,
                    rpcs: bool = False) -> Path:
    """``image`` georeferenced by nine ground control points on ``transform`` instead of by a
    geotransform (the middle one ``bend_px`` along the row, so that no affine fits them all), or,
    with ``rpcs``, by a made-up set of RPCs alone."""
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC

    _, height, width = image.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as out:
        out.write(image)
        if rpcs:
            out.rpcs = RPC(height_off=0, height_scale=100, lat_off=42.4, lat_scale=0.01, long_off=130.6,
                           long_scale=0.01, line_off=height / 2, line_scale=height / 2, samp_off=width / 2,
                           samp_scale=width / 2, line_num_coeff=[0, 0, -1] + [0] * 17,
                           line_den_coeff=[1] + [0] * 19, samp_num_coeff=[0, 1] + [0] * 18,
                           samp_den_coeff=[1] + [0] * 19)
            return path
        points = []
        for row in (0, height // 2, height):
            for col in (0, width // 2, width):
                shift = bend_px if (row, col) == (height // 2, width // 2) else 0.0
                x, y = transform @ (col + shift, row)
                points.append(GroundControlPoint(row=row, col=col, x=x, y=y))
        out.gcps = (points, crs)
    return path
