"""`railsight detect SCENE -o OUT`: one scene to GeoJSON, no server."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from models.interface import TTA_VIEWS
from models.spec import PRECISIONS
from service.cluster import dask_client
from service.geojson import write_geojson
from service.pipeline import (
    ALL_CLASSES,
    DetectOptions,
    detect_scene,
    model_spec_from_settings,
    options_from_settings,
    prepare_scene,
)
from service.rasters import BANDS_FROM_ORDER
from service.settings import PipelineSettings


def band_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected band numbers like 3,2,1, got {text!r}") from exc


def positive_int(text: str) -> int:
    """A whole number of 1 or more (the same bound the RAILSIGHT_* settings hold these options to)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def class_list(text: str) -> tuple[str, ...]:
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    bad = [c for c in classes if c not in ALL_CLASSES]
    if bad or not classes:
        raise argparse.ArgumentTypeError(f"unknown class {bad[0] if bad else text!r}: use {','.join(ALL_CLASSES)}")
    return classes


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", type=int, choices=TTA_VIEWS,
                        help="test-time augmentation: average the model over 2, 4 or 8 flipped views of each tile; "
                             "each view costs one more model pass (default 1: none)")


def add_model_tile_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-tile", type=int,
                        help="run the model on tiles of this core size, a multiple of 32, instead of the weights' own "
                             "(256 for the shipped weights); their features then differ, since the model's output "
                             "depends on the window it sees")


def add_scene_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `detect` and `batch`."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="model device (default: auto)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="model arithmetic (default auto: bf16 on CUDA and on CPUs with native bf16, else fp32)")
    parser.add_argument("--tile", type=int, help="the square of the scene one Dask task covers, in model pixels, "
                        "a multiple of 32 (default: a square of model tiles filling two model calls on a CPU, one on CUDA); "
                        "it changes no feature")
    add_model_tile_option(parser)
    parser.add_argument("--batch-size", type=positive_int, help="tiles per model call (default: by the window's pixels; "
                        "8 tiles of 256 px on CPU, 104 on CUDA)")
    parser.add_argument("--workers", type=positive_int, help="LocalCluster worker processes")
    parser.add_argument("--bands", type=band_list, help="1-based red,green,blue band numbers, e.g. 3,2,1")
    parser.add_argument("--classes", type=class_list, help=f"comma list of {','.join(ALL_CLASSES)} (default: all)")
    parser.add_argument("--min-confidence", type=float, help="drop features below this confidence (0..1)")
    add_tta_option(parser)
    parser.add_argument("--compile", action="store_true", default=None,
                        help="run the model under torch.compile, which each worker does before its first tile "
                             "(tens of seconds): for long runs on a GPU; on a CPU it seldom pays")
    parser.add_argument("--allow-pixel-coords", action="store_true", help="run on scenes with no georeferencing")
    parser.add_argument("--pixel-size", type=float, metavar="M",
                        help="ground size of one pixel in metres, for a scene with no georeferencing (a plain "
                             "picture, e.g. 0.1); implies --allow-pixel-coords (without it, the model's own 0.5 m "
                             "is assumed)")
    parser.add_argument("--max-pixels", type=positive_int, help="refuse scenes with more pixels than this")
    parser.add_argument("--weights", help="weights file (default: the shipped model)")
    parser.add_argument("--off-nadir", type=float, metavar="DEG",
                        help="the view's angle from straight down (with --satellite-azimuth): railcars are then drawn "
                             "as wide as they show, roof and wall (default: what the scene's metadata records)")
    parser.add_argument("--satellite-azimuth", type=float, metavar="DEG",
                        help="the bearing from the scene to the satellite, clockwise from north (Maxar meanSatAz, "
                             "Planet satellite_azimuth)")
    add_view_metadata_option(parser)


def add_view_metadata_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ignore-view-metadata", action="store_true",
                        help="do not use the view a scene's metadata records (a Maxar .IMD or .XML, an Airbus DIM_*.XML, "
                             "or a STAC or Planet JSON beside it)")


def settings_from_args(args: argparse.Namespace) -> PipelineSettings:
    settings = PipelineSettings()
    names = ("device", "precision", "workers", "weights")
    updates = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    return settings.model_copy(update=updates)


def scene_options_from_args(args: argparse.Namespace, settings: PipelineSettings, **extra) -> DetectOptions:
    """The DetectOptions that `add_scene_options` flags ask for, checked."""
    options = options_from_settings(
        settings,
        tile=args.tile,
        model_tile=args.model_tile,
        batch_size=args.batch_size,
        bands=args.bands,
        classes=args.classes,
        min_confidence=args.min_confidence,
        tta=args.tta,
        compile=args.compile,
        allow_pixel_coords=args.allow_pixel_coords or None,
        pixel_size_m=args.pixel_size,
        max_pixels=args.max_pixels,
        off_nadir_deg=args.off_nadir,
        satellite_azimuth_deg=args.satellite_azimuth,
        view_metadata=not args.ignore_view_metadata,
        **extra,
    )
    options.check()
    return options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect railcars, tarped cargo and tracks in one scene")
    p.add_argument("scene", help="GeoTIFF, COG, VRT or anything GDAL reads with 3+ bands")
    p.add_argument("-o", "--output", required=True, help="GeoJSON file to write")
    p.add_argument("--class-raster", help="also write a class COG (0 background, 1 railcar, 2 cargo, 3 track)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_scene_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = scene_options_from_args(args, settings, class_raster=args.class_raster)
    spec = model_spec_from_settings(settings)
    prepared = prepare_scene(args.scene, options, spec)  # bad input fails here, before any worker starts
    bar = tqdm(total=0, unit="tile", desc="tiles", disable=args.quiet or None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with dask_client(settings) as client:
        try:
            collection = detect_scene(prepared, options, spec, client, progress=progress)
        finally:
            bar.close()
    write_geojson(collection, args.output)
    summary = collection["summary"]
    counts = ", ".join(f"{n} {cls}" for cls, n in summary["counts"].items())
    gains = summary.get("colour_gains")
    notes = f", colour balanced: R x{gains[0]:.2f} G x{gains[1]:.2f} B x{gains[2]:.2f}" if gains else ""
    if summary.get("contrast_scale"):
        notes += f", contrast x{summary['contrast_scale']:.2f}"
    scene = summary["scene"]
    if scene["bands_from"] == BANDS_FROM_ORDER and scene["band_count"] > 3:
        notes += ", bands 1-3 read as red, green, blue: --bands to choose"  # nothing in the scene says which are
    if view := summary.get("view"):
        notes += f", seen {view['off_nadir_deg']:g} deg off nadir ({view['source']})"
    print(f"{args.output}: {counts} ({summary['timings']['total_s']:.1f} s, {summary['device']}{notes})")
    return 0
