"""Placing a scene built in local metres on the Earth, in a CRS.

The local frame has x east, y north, in metres, with its origin at the scene centre. A scene lands in
its CRS through one affine map, ``local_to_crs``: a scale per axis (CRS units per ground metre at
the scene centre, measured geodesically) and a translation. It is exact for UTM up to the scale
factor's change across a scene (parts per million) and a first-order approximation for EPSG:4326 and
Web Mercator, which is far below a pixel over the few kilometres a scene spans. Pixels and labels use
the same map, so they always agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS, Geod, Transformer

# Where the analysts look (USE_CASE.md): the Tumangang rail facility, UTM zone 52N.
TUMANGANG = (130.60, 42.42)


@dataclass(frozen=True)
class Placement:
    crs: str
    lon: float
    lat: float
    local_to_crs: Affine


def utm_epsg(lon: float, lat: float) -> str:
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def sample_location(rng: np.random.Generator, crs: str | None = None) -> tuple[float, float]:
    """Somewhere plausible for a rail yard: inside the area of use of ``crs`` when it has a small
    one (a UTM zone, a national grid); else near Tumangang a third of the time, else anywhere
    between 50 S and 65 N."""
    area = None
    if crs is not None:
        try:
            area = CRS.from_user_input(crs).area_of_use
        except Exception:  # an unknown CRS fails later, in place(), with its own message
            area = None
    if area is not None and (area.east - area.west) < 90 and area.east > area.west:
        south, north = max(area.south, -60.0), min(area.north, 70.0)
        if north > south:
            pad_x, pad_y = 0.1 * (area.east - area.west), 0.1 * (north - south)
            lon = float(rng.uniform(area.west + pad_x, area.east - pad_x))
            return lon, float(rng.uniform(south + pad_y, north - pad_y))
    if rng.random() < 1 / 3:
        return TUMANGANG[0] + rng.uniform(-2.0, 2.0), TUMANGANG[1] + rng.uniform(-1.5, 1.5)
    return float(rng.uniform(-179.0, 179.0)), float(rng.uniform(-50.0, 65.0))


def place(lon: float, lat: float, crs: str | None = None) -> Placement:
    """The affine from local metres (origin at ``lon, lat``) to ``crs`` (the UTM zone when None)."""
    crs = crs or utm_epsg(lon, lat)
    try:
        target = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError; keep the message one line
        raise ValueError(f"unknown CRS: {crs}") from exc
    to_crs = Transformer.from_crs(CRS.from_epsg(4326), target, always_xy=True)
    to_lonlat = Transformer.from_crs(target, CRS.from_epsg(4326), always_xy=True)
    x0, y0 = to_crs.transform(lon, lat)
    geod = Geod(ellps="WGS84")
    # Ground metres for a small step along each CRS axis at the centre.
    step = 1e-4 if target.is_geographic else 10.0
    lons, lats = to_lonlat.transform([x0, x0 + step, x0], [y0, y0, y0 + step])
    _, _, dx = geod.inv(lons[0], lats[0], lons[1], lats[1])
    _, _, dy = geod.inv(lons[0], lats[0], lons[2], lats[2])
    kx, ky = step / dx, step / dy  # CRS units per metre
    return Placement(crs=str(crs), lon=lon, lat=lat, local_to_crs=Affine(kx, 0.0, x0, 0.0, ky, y0))


def grid_transform_m(size_px: int, pixel_size_m: float) -> Affine:
    """Pixel (col, row) -> local metres for a square north-up grid centred on the origin."""
    half = size_px * pixel_size_m / 2.0
    return Affine(pixel_size_m, 0.0, -half, 0.0, -pixel_size_m, half)


def to_lonlat_transformer(crs: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(crs), CRS.from_epsg(4326), always_xy=True)
