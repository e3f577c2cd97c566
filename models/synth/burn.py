"""Burning geometry into grids: the one rasterising call the painter and the labels share.

``rasterio.features.rasterize`` with the pixel-centre rule, fed plain GeoJSON-like dicts built from
coordinate arrays (several times faster than handing it shapely objects one by one).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize


def _geojson(geom) -> dict | None:
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "Polygon" and not geom.interiors:
        return {"type": "Polygon", "coordinates": [shapely.get_coordinates(geom).tolist()]}
    return shapely.geometry.mapping(geom)


def boxes_geojson(corners: np.ndarray) -> list[dict]:
    """GeoJSON polygons for an (N, 4, 2) array of box corners."""
    rings = np.concatenate([corners, corners[:, :1]], axis=1).tolist()
    return [{"type": "Polygon", "coordinates": [ring]} for ring in rings]


def burn(
    shapes: Iterable[tuple[object, int | float]],
    shape: tuple[int, int],
    transform: Affine,
    dtype: str = "int32",
    fill: int = 0,
) -> np.ndarray:
    """Rasterise ``(geometry, value)`` pairs (shapely geometries or GeoJSON dicts; later pairs on
    top) on a grid; a pixel takes a value when its centre lies inside the geometry."""
    pairs = []
    for geom, value in shapes:
        g = geom if isinstance(geom, dict) else _geojson(geom)
        if g is not None:
            pairs.append((g, value))
    if not pairs:
        return np.full(shape, fill, dtype=dtype)
    return rasterize(pairs, out_shape=shape, transform=transform, fill=fill, dtype=dtype)
