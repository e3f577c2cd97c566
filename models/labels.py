"""A user's own labels (for fine-tuning) -> training targets on a scene's model grid.

Labels are a GeoJSON FeatureCollection: polygons (``railcar``, ``tarped_cargo``) and centre lines
or band polygons (``track``), each with ``properties.class``. Coordinates are WGS 84 lon/lat as RFC
7946 says, unless the file carries an old-style ``crs`` member (``urn:ogc:def:crs:EPSG::2056``, as
QGIS and GDAL write) or the caller names the CRS. A MultiPolygon is one object per part.

Targets follow the model contract (``models.interface``) and the data engine's conventions:

    semantic  tracks first (a band ``TRACK_BAND_M`` wide around each centre line), then tarped
              cargo, then railcars on top (cars stand on tracks)
    cores     the engine's own rule (``models.synth.core_polygon``): the footprint shrunk by
              min(1.5 m, 30 %) of its length at each end and of its width at each side

Everything is drawn in *grid pixel* coordinates (labels CRS -> scene CRS -> model grid), so the
same code serves UTM, EPSG:4326 and Web Mercator scenes and the buffers are in ground metres.

Partial labels: classes that a labels file does not mention at all are *unknown* for that scene
(``known`` False), and training does not teach the model that those pixels are background.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from pyproj import CRS, Transformer
from rasterio import features
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from models.interface import CLASS_INDEX, OBJECT_CLASSES, SEMANTIC_CLASSES

LABEL_CLASSES = ("railcar", "tarped_cargo", "track")
TRACK_BAND_M = 1.5  # the same band as the engine's labels
IGNORE = 255


class LabelError(ValueError):
    """A labels file that cannot be used (unreadable, unknown class, wrong geometry type)."""

    code = "bad_labels"


@dataclass
class Labels:
    """Label geometries in ``crs``, per class."""

    crs: CRS
    geometries: dict[str, list[BaseGeometry]] = field(default_factory=dict)

    @property
    def known(self) -> tuple[str, ...]:
        return tuple(c for c in LABEL_CLASSES if self.geometries.get(c))


def _crs_member(doc: dict) -> CRS | None:
    member = doc.get("crs")
    if not member:
        return None
    name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    if not name:
        raise LabelError("the 'crs' member has no properties.name")
    try:
        return CRS.from_user_input(name)
    except Exception as exc:
        raise LabelError(f"unknown CRS {name!r} in the 'crs' member") from exc


def read_labels(path: str | Path, crs: str | None = None) -> Labels:
    """Read a labels GeoJSON. ``crs`` overrides whatever the file says."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LabelError(f"labels file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise LabelError(f"labels file is not JSON: {path} ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise LabelError(f"labels must be a GeoJSON FeatureCollection: {path}")
    try:
        label_crs = CRS.from_user_input(crs) if crs else _crs_member(doc) or CRS.from_epsg(4326)
    except LabelError as exc:
        raise LabelError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise LabelError(f"unknown CRS {crs!r}") from exc
    out: dict[str, list[BaseGeometry]] = {c: [] for c in LABEL_CLASSES}
    unknown: dict[str, int] = {}
    for i, feat in enumerate(doc.get("features") or []):
        cls = ((feat or {}).get("properties") or {}).get("class")
        if cls not in LABEL_CLASSES:
            unknown[str(cls)] = unknown.get(str(cls), 0) + 1
            continue
        try:
            geom = shape(feat["geometry"])
        except Exception as exc:
            raise LabelError(f"{path}: feature {i} has no usable geometry ({exc})") from exc
        kinds = ("LineString", "MultiLineString", "Polygon", "MultiPolygon") if cls == "track" else (
            "Polygon", "MultiPolygon")
        if geom.geom_type not in kinds:
            raise LabelError(f"{path}: feature {i} is a {geom.geom_type}; {cls} needs {' or '.join(kinds)}")
        parts = list(geom.geoms) if geom.geom_type.startswith("Multi") else [geom]
        out[cls].extend(p for p in parts if not p.is_empty)
    if unknown:
        listed = ", ".join(f"{k!r} ({n})" for k, n in sorted(unknown.items()))
        raise LabelError(f"{path}: unknown class {listed}; properties.class must be one of {', '.join(LABEL_CLASSES)}")
    if not any(out.values()):
        raise LabelError(f"{path}: no railcar, tarped_cargo or track features")
    return Labels(label_crs, out)


def to_grid_pixels(labels: Labels, scene_crs: str | CRS | None, grid_transform: Affine) -> dict[str, list]:
    """Label geometries in model-grid pixel coordinates (x = column, y = row)."""
    inverse = ~grid_transform
    inv = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
    transformer = None
    if scene_crs is not None:
        dst = CRS.from_user_input(scene_crs)
        if not dst.equals(labels.crs):
            transformer = Transformer.from_crs(labels.crs, dst, always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])  # type: ignore[union-attr]
        return np.column_stack([x, y])

    out = {}
    for cls, geoms in labels.geometries.items():
        moved = [shapely.transform(g, project) for g in geoms] if transformer else list(geoms)
        out[cls] = [shapely.affinity.affine_transform(g, inv) for g in moved]
    return out


def core_of(polygon: BaseGeometry, grid_pixel_m: float) -> BaseGeometry:
    """The core of a footprint given in grid pixels, by the engine's rule in metres."""
    from models.synth import core_polygon

    metres = shapely.affinity.scale(polygon, grid_pixel_m, grid_pixel_m, origin=(0, 0))
    core = core_polygon(metres)
    return shapely.affinity.scale(core, 1.0 / grid_pixel_m, 1.0 / grid_pixel_m, origin=(0, 0))


def rasterize_targets(
    pixel_geoms: Mapping[str, Sequence[BaseGeometry]], shape_hw: tuple[int, int], grid_pixel_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Semantic classes (H, W) uint8 and cores (2, H, W) bool from geometries in grid pixels."""
    h, w = shape_hw
    semantic = np.zeros((h, w), dtype=np.uint8)
    ident = Affine.identity()
    band_px = TRACK_BAND_M / grid_pixel_m
    tracks = [g.buffer(band_px / 2.0, cap_style="flat") if g.geom_type.endswith("LineString") else g
              for g in pixel_geoms.get("track", [])]
    for cls, geoms in (("track", tracks), ("tarped_cargo", pixel_geoms.get("tarped_cargo", [])),
                       ("railcar", pixel_geoms.get("railcar", []))):
        shapes = [(g, CLASS_INDEX[cls]) for g in geoms if not g.is_empty]
        if shapes:
            features.rasterize(shapes, out=semantic, transform=ident, merge_alg=features.MergeAlg.replace)
    cores = np.zeros((len(OBJECT_CLASSES), h, w), dtype=bool)
    for k, cls in enumerate(OBJECT_CLASSES):
        shapes = [(c, 1) for g in pixel_geoms.get(cls, []) if not (c := core_of(g, grid_pixel_m)).is_empty]
        if shapes:
            cores[k] = features.rasterize(shapes, out_shape=(h, w), transform=ident, dtype=np.uint8) > 0
    return semantic, cores


def known_vector(known_classes: Sequence[str]) -> np.ndarray:
    """(4,) bool over the semantic classes: background is always known."""
    return np.array([c == "background" or c in known_classes for c in SEMANTIC_CLASSES], dtype=bool)
