"""`railsight synth OUT --n N --seed S`: render synthetic rail-yard scenes with exact labels.

    railsight synth heldout/ --n 24 --seed 1000
    railsight synth big/ --n 4 --seed 7 --size 2048 --pixel-size 0.5 --min-railcars 70 --crs EPSG:4326

Each scene ``scene_NNNN`` is three files (see ``models.synth.io``): ``.tif`` (RGB, internal no-data
mask), ``.labels.tif`` (semantic, cores, instances) and ``.geojson`` (truth in the output contract
plus the scene's conditions). ``index.json`` lists the scenes with their seeds and conditions.
Scene ``i`` of a run with seed ``S`` is rendered from ``models.synth.scene_seed(S, i)``, so runs with
different seeds never share a scene.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.errors import BadOption

SIZE_RANGE = (64, 8192)
PIXEL_SIZE_RANGE = (0.1, 2.0)
SEASONS = ("summer", "spring", "autumn", "winter", "snow", "arid")


def _one_line_error(parser: argparse.ArgumentParser):
    def error(message: str):
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="render synthetic rail-yard scenes with labels and truth")
    p.add_argument("out", metavar="OUT", help="output directory (created if missing)")
    p.add_argument("--n", type=int, default=1, help="number of scenes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--size", type=int, default=1024, help="scene width and height in pixels (default 1024)")
    p.add_argument("--pixel-size", type=float, help="ground pixel size in metres (default: random 0.25-1.0)")
    p.add_argument("--crs", help="output CRS, e.g. EPSG:4326 or EPSG:3857 (default: the local UTM zone)")
    p.add_argument("--min-railcars", type=int, default=0, help="at least this many railcars per scene")
    p.add_argument("--season", choices=SEASONS, help="fix the season (default: random)")
    p.add_argument("--start", type=int, default=0, help="index of the first scene (to extend a run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.error = _one_line_error(p)  # type: ignore[method-assign]
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise BadOption(f"--n must be at least 1, got {args.n}")
    if args.start < 0:
        raise BadOption(f"--start must be 0 or more, got {args.start}")
    if not SIZE_RANGE[0] <= args.size <= SIZE_RANGE[1]:
        raise BadOption(f"--size must be between {SIZE_RANGE[0]} and {SIZE_RANGE[1]} pixels, got {args.size}")
    if args.pixel_size is not None and not PIXEL_SIZE_RANGE[0] <= args.pixel_size <= PIXEL_SIZE_RANGE[1]:
        raise BadOption(
            f"--pixel-size must be between {PIXEL_SIZE_RANGE[0]} and {PIXEL_SIZE_RANGE[1]} m, got {args.pixel_size}"
        )
    if args.min_railcars < 0:
        raise BadOption(f"--min-railcars must be 0 or more, got {args.min_railcars}")
    if args.crs is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(args.crs)
        except CRSError as exc:
            raise BadOption(f"--crs is not a CRS pyproj knows: {args.crs}") from exc
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadOption(f"OUT exists and is not a directory: {out}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from tqdm import tqdm

    from models.synth import ENGINE_VERSION, render_scene, scene_seed, write_scene

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"season": args.season} if args.season else {}
    index_path = out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    scenes = {s["name"]: s for s in index.get("scenes", [])}
    total = 0
    for i in tqdm(range(args.start, args.start + args.n), desc="synth", unit="scene", disable=args.quiet):
        seed = scene_seed(args.seed, i)
        name = f"scene_{i:04d}"
        try:
            scene = render_scene(
                seed,
                size_px=args.size,
                pixel_size_m=args.pixel_size,
                crs=args.crs,
                min_railcars=args.min_railcars,
                **overrides,
            )
        except ValueError as exc:
            raise BadOption(f"scene {name}: {exc}") from exc
        paths = write_scene(scene, out, name)
        c = scene.conditions
        total += c["n_railcars"]
        scenes[name] = {
            "name": name,
            "index": i,
            "seed": seed,
            "files": {k: p.name for k, p in paths.items()},
            "railcars": c["n_railcars"],
            "tarped_cargo": c["n_tarped_cargo"],
            "pixel_size_m": c["pixel_size_m"],
            "season": c["season"],
            "haze": c["haze"],
            "crs": c["crs"],
        }
    index = {
        "engine": "models.synth",
        "engine_version": ENGINE_VERSION,
        "run_seed": args.seed,
        "scenes": [scenes[k] for k in sorted(scenes)],
    }
    tmp = index_path.with_name(".index.json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(index_path)
    if not args.quiet:
        print(f"wrote {args.n} scene(s) to {out} ({total} railcars)", file=sys.stderr)
    return 0
