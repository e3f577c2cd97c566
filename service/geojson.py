"""RFC 7946 output: geometries to WGS 84 lon/lat, right-hand polygons, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.polygon import orient

MEDIA_TYPE = "application/geo+json"
# 1e-8 degrees is about a millimetre: plenty, and it keeps files small.
DECIMALS = 8


class GeometryMapper:
    """Grid pixel coordinates -> scene CRS -> WGS 84 (or scene pixels when the scene has no CRS)."""

    def __init__(self, grid_transform: Affine, crs_wkt: str | None) -> None:
        t = grid_transform
        self._affine = [t.a, t.b, t.d, t.e, t.c, t.f]
        self._to_lonlat = (
            Transformer.from_crs(CRS.from_wkt(crs_wkt), CRS.from_epsg(4326), always_xy=True) if crs_wkt else None
        )

    def to_scene(self, geom):
        return affinity.affine_transform(geom, self._affine)

    def to_output(self, geom):
        """Grid pixels -> the output's coordinates, polygons oriented counter-clockwise (right-hand rule)."""
        g = self.to_scene(geom)
        if self._to_lonlat is not None:
            transformer = self._to_lonlat

            def project(coords: np.ndarray) -> np.ndarray:
                x, y = transformer.transform(coords[:, 0], coords[:, 1])
                return np.column_stack([x, y])

            g = shapely.transform(g, project)
        g = shapely.transform(g, lambda c: np.round(c, DECIMALS))
        return right_hand(g)


def right_hand(geom):
    if isinstance(geom, Polygon):
        return orient(geom, sign=1.0)
    if isinstance(geom, MultiPolygon):
        return MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return geom


def feature(fid: str, geom, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "geometry": mapping(geom), "properties": properties}


def feature_collection(features: list[dict], summary: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, "summary": summary}


def write_json(data: dict[str, Any], path: str | Path, *, indent: int | None = None) -> Path:
    """Write to a temporary name beside ``path``, fsync, then rename: readers see the old file or the
    new one, never a half-written result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, separators=None if indent else (",", ":"))
            if indent:
                fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_geojson(collection: dict[str, Any], path: str | Path) -> Path:
    return write_json(collection, path)
