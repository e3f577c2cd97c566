"""Writing a scene: the RGB GeoTIFF (internal no-data mask), the label GeoTIFF and the truth GeoJSON
in the output contract (RFC 7946: WGS 84 lon/lat, right-hand polygons, no ``crs`` member).

Label bands (uint16): 1 semantic class (SEMANTIC_CLASSES order), 2 railcar core, 3 cargo core,
4 instance id (0 none).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from shapely.geometry import LineString, Polygon, mapping
from shapely.geometry.polygon import orient

from models.interface import SEMANTIC_CLASSES
from models.synth.geo import to_lonlat_transformer
from models.synth.labels import rasterize_labels
from models.synth.lean import satellite_view
from service.rasters import write_geotiff
from service.view_geometry import imd_text

CONTRACT_PROPERTIES = ("kind", "length_m", "width_m", "heading_deg", "area_m2")


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of a run started with ``seed``: distinct runs never share scenes
    (unlike ``seed + index``)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _lonlat(geom, transformer):
    if isinstance(geom, Polygon):
        ext = np.asarray(geom.exterior.coords)
        x, y = transformer.transform(ext[:, 0], ext[:, 1])
        holes = []
        for ring in geom.interiors:
            r = np.asarray(ring.coords)
            hx, hy = transformer.transform(r[:, 0], r[:, 1])
            holes.append(np.column_stack([hx, hy]))
        return orient(Polygon(np.column_stack([x, y]), holes), sign=1.0)
    coords = np.asarray(geom.coords)
    x, y = transformer.transform(coords[:, 0], coords[:, 1])
    return LineString(np.column_stack([x, y]))


def _rounded(obj, digits: int = 9):
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    return obj


def truth_geojson(scene) -> dict:
    """The scene's truth as an output-contract FeatureCollection (plus ``conditions``)."""
    transformer = to_lonlat_transformer(scene.crs)
    features = []
    for obj in scene.objects:
        props = {"class": obj["class"], "id": obj["id"], "confidence": 1.0}
        props.update({k: obj[k] for k in CONTRACT_PROPERTIES if k in obj})
        geom = mapping(_lonlat(obj["polygon"], transformer))
        features.append({"type": "Feature", "id": obj["id"], "properties": props, "geometry": _rounded(geom)})
    next_id = len(scene.objects) + 1
    for k, line in enumerate(scene.tracks):
        lonlat = _lonlat(line, transformer)
        props = {"class": "track", "id": next_id + k, "confidence": 1.0, "length_m": round(_length_m(line, scene), 2)}
        features.append({"type": "Feature", "id": next_id + k, "properties": props, "geometry": _rounded(mapping(lonlat))})
    counts = {c: sum(1 for o in scene.objects if o["class"] == c) for c in ("railcar", "tarped_cargo")}
    counts["track"] = len(scene.tracks)
    summary = {
        "counts": counts,
        "crs": scene.crs,
        "pixel_size_m": scene.pixel_size_m,
        "valid_share": float(scene.valid.mean()),
        "source": "railsight synthetic data engine",
    }
    return {"type": "FeatureCollection", "features": features, "summary": summary, "conditions": scene.conditions}


def _length_m(line, scene) -> float:
    from models.synth.labels import to_metres

    return float(to_metres(line, scene.local_to_crs).length)


def write_view(scene, image: Path) -> Path:
    """The view ``scene`` was drawn from, written beside its ``image`` as ``.IMD`` (Maxar's layout),
    where GDAL reads it with the image."""
    view = Path(image).with_suffix(".IMD")
    view.parent.mkdir(parents=True, exist_ok=True)
    view.write_text(imd_text(satellite_view(scene.conditions)))
    return view


def write_scene(scene, out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``name.tif``, ``name.IMD`` (the view, which GDAL reads with it: ``service.view_geometry``),
    ``name.labels.tif`` and ``name.geojson`` under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = write_geotiff(out_dir / f"{name}.tif", scene.image, transform=scene.transform, crs=scene.crs, mask=scene.valid)
    view = write_view(scene, image)
    semantic, cores, instances = rasterize_labels(scene, scene.transform, scene.valid.shape)
    stack = np.stack([semantic.astype(np.uint16), cores[0].astype(np.uint16), cores[1].astype(np.uint16),
                      instances.astype(np.uint16)])  # fmt: skip
    labels = write_geotiff(
        out_dir / f"{name}.labels.tif", stack, transform=scene.transform, crs=scene.crs, photometric_rgb=False
    )
    truth = out_dir / f"{name}.geojson"
    tmp = truth.with_name(f".{truth.name}.tmp")
    tmp.write_text(json.dumps(truth_geojson(scene)))
    tmp.replace(truth)
    return {"image": image, "view": view, "labels": labels, "truth": truth}


__all__ = ["SEMANTIC_CLASSES", "scene_seed", "truth_geojson", "write_scene", "write_view"]
