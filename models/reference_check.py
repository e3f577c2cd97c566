"""The one check on real imagery: railcars found on the Muttenz reference picture.

``shared/reference/muttenz_yard_boxes_0.1m.png`` is a real 0.1 m aerial picture of a marshalling
yard with boxes burned into it, so it cannot be training data and has no usable truth polygons.
What it can say is whether the model calls real cars railcars and real empty tracks not: 21 car
centres were marked on it by hand (picture pixels, below). A detected railcar that contains a
centre not yet claimed is a hit; one that contains no marked centre and lies mostly off the
picture's white label boxes ("zug: 98") stands on no marked car (empty track, shadow, building;
unmarked cars on the picture's edges are few); one that lies mostly on a label box is counted apart:
a white box is a fair railcar look-alike that no real scene carries.

    python -m models.reference_check ../shared/reference/muttenz_yard_boxes_0.1m.png [--weights W]

The picture has no georeferencing; it is written as a GeoTIFF at ``--pixel-size`` metres on a
made-up UTM origin, which changes nothing but the coordinates.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Point, shape

# Hand-marked car centres (column, row) on muttenz_yard_boxes_0.1m.png (1000 x 1000 px).
MUTTENZ_CAR_CENTRES = (
    (247, 460), (337, 477), (263, 517), (600, 433), (757, 467), (890, 507), (970, 537), (510, 537),
    (437, 573), (673, 570), (560, 607), (660, 637), (303, 630), (470, 667), (640, 723), (797, 770),
    (940, 810), (813, 680), (910, 650), (985, 673), (975, 720),
)  # fmt: skip
ORIGIN = (400000.0, 5270000.0)  # made up: UTM zone 32N (EPSG:32632), where Muttenz lies
CRS = "EPSG:32632"


def score_centres(polygons: list, centres: list[tuple[float, float]], label_boxes: list | None = None) -> dict[str, int]:
    """Polygons, centres and label boxes in one coordinate system. Each polygon claims at most one
    centre, and each centre is claimed once (in polygon order). A polygon on no centre with at least
    a quarter of its area on label boxes counts as ``on_label_box``, else as ``on_no_car``."""
    points = [Point(c) for c in centres]
    labels = shapely.union_all(label_boxes) if label_boxes else shapely.Polygon()
    claimed: set[int] = set()
    on_no_car = on_label = 0
    for poly in polygons:
        inside = [i for i, p in enumerate(points) if poly.contains(p)]
        free = [i for i in inside if i not in claimed]
        if free:
            claimed.add(free[0])
        elif inside:
            continue
        elif poly.area > 0 and poly.intersection(labels).area >= 0.25 * poly.area:
            on_label += 1
        else:
            on_no_car += 1
    return {"railcars": len(polygons), "cars_marked": len(centres), "cars_hit": len(claimed),
            "on_no_car": on_no_car, "on_label_box": on_label}  # fmt: skip


def find_label_boxes(rgb: np.ndarray, min_pixels: int = 300) -> list:
    """The picture's burned-in label boxes: pure white patches (every channel >= 250) of at least
    ``min_pixels``, as pixel-space rectangles (their bounding boxes)."""
    from scipy import ndimage

    white, _ = ndimage.label(rgb.min(axis=-1) >= 250)
    boxes = []
    for i, found in enumerate(ndimage.find_objects(white), start=1):
        rows, cols = found
        if (white[found] == i).sum() >= min_pixels:
            boxes.append(shapely.box(cols.start, rows.start, cols.stop, rows.stop))
    return boxes


def read_picture(picture: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(picture).convert("RGB"))


def write_picture(rgb: np.ndarray, out: Path, pixel_size_m: float):
    """The picture (H, W, 3) as an RGB GeoTIFF; returns its affine transform."""
    from rasterio.transform import from_origin

    from service.rasters import write_geotiff

    transform = from_origin(*ORIGIN, pixel_size_m, pixel_size_m)
    write_geotiff(out, np.ascontiguousarray(rgb.transpose(2, 0, 1)), transform=transform, crs=CRS)
    return transform


def railcars_in_pixels(collection: dict, transform) -> list:
    """Railcar polygons of a detection FeatureCollection (WGS 84) in picture pixels."""
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    to_px = ~transform

    def project(xy: np.ndarray) -> np.ndarray:
        x, y = to_utm.transform(xy[:, 0], xy[:, 1])
        col, row = to_px @ (np.asarray(x), np.asarray(y))
        return np.column_stack([col, row])

    return [shapely.transform(shape(f["geometry"]), project)
            for f in collection["features"] if f["properties"]["class"] == "railcar"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.reference_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("picture", type=Path, help="muttenz_yard_boxes_0.1m.png")
    parser.add_argument("--weights", help="weights file (default: the shipped model)")
    parser.add_argument("--pixel-size", type=float, default=0.1, help="ground pixel size in metres (default 0.1)")
    parser.add_argument("--out", type=Path, help="also keep the detections here (GeoJSON)")
    args = parser.parse_args(argv)
    if not args.picture.is_file():
        print(f"reference_check: no such picture: {args.picture}", file=sys.stderr)
        return 2

    from service.cluster import dask_client
    from service.geojson import write_geojson
    from service.pipeline import detect_scene, model_spec_from_settings, options_from_settings
    from service.settings import PipelineSettings

    settings = PipelineSettings().model_copy(update={"workers": 1, **({"weights": args.weights} if args.weights else {})})
    with tempfile.TemporaryDirectory() as tmp:
        tif = Path(tmp) / "reference.tif"
        rgb = read_picture(args.picture)
        transform = write_picture(rgb, tif, args.pixel_size)
        with dask_client(settings) as client:
            collection = detect_scene(tif, options_from_settings(settings), model_spec_from_settings(settings), client)
    if args.out:
        write_geojson(collection, args.out)
    railcars = railcars_in_pixels(collection, transform)
    result = score_centres(railcars, list(MUTTENZ_CAR_CENTRES), find_label_boxes(rgb))
    result["counts"] = collection["summary"]["counts"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
