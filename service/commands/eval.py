"""`railsight eval --scenes DIR`: the full pipeline on scenes with truth; metrics as JSON.

    railsight synth heldout/ --n 24 --seed 1000      # held-out scenes (seeds below the training range)
    railsight eval --scenes heldout/ --out report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from service.commands.detect import add_model_tile_option, add_tta_option
from service.errors import BadOption


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run the pipeline on scenes with truth and report metrics as JSON")
    p.add_argument("--scenes", required=True, help="directory of NAME.tif + NAME.geojson pairs (railsight synth)")
    p.add_argument("--weights", help="weights file (default: the shipped model)")
    p.add_argument("--out", help="also write the full report (with per-scene results) to this JSON file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="model device (default: auto)")
    p.add_argument("--workers", type=int, help="LocalCluster worker processes")
    add_model_tile_option(p)
    add_tta_option(p)
    p.add_argument("--limit", type=int, help="evaluate only the first N scenes")
    p.add_argument("--per-scene", action="store_true", help="print per-scene results too")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.evaluation import EvaluationError, evaluate, find_scenes
    from models.spec import SHIPPED_WEIGHTS, read_meta
    from service.cluster import dask_client
    from service.commands.detect import settings_from_args
    from service.pipeline import detect_scene, model_spec_from_settings, options_from_settings

    if args.limit is not None and args.limit < 1:
        raise BadOption(f"--limit must be at least 1, got {args.limit}")
    if args.workers is not None and args.workers < 1:
        raise BadOption(f"--workers must be at least 1, got {args.workers}")
    try:
        pairs = find_scenes(args.scenes)
    except EvaluationError as exc:
        raise BadOption(str(exc)) from exc
    pairs = pairs[: args.limit] if args.limit else pairs
    settings = settings_from_args(args)
    spec = model_spec_from_settings(settings)
    options = options_from_settings(settings, model_tile=args.model_tile, tta=args.tta)
    options.check()
    model_info: dict = {"source": spec.describe()}
    if not spec.factory:
        meta = read_meta(spec.weights or SHIPPED_WEIGHTS)
        model_info.update(name=meta.name, version=meta.version,
                          trained_on=meta.extra.get("hardware"), train_seconds=meta.extra.get("train_seconds"),
                          steps=meta.extra.get("steps"))
    bar = tqdm(total=len(pairs), unit="scene", desc="eval", disable=args.quiet or None, file=sys.stderr)

    def progress(done: int, total: int, name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    with dask_client(settings) as client:
        try:
            report = evaluate(pairs, lambda path: detect_scene(path, options, spec, client), progress=progress)
        finally:
            bar.close()
    report = {"model": model_info, "scene_dir": str(args.scenes), **report}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    shown = report if args.per_scene else {k: v for k, v in report.items() if k != "per_scene"}
    print(json.dumps(shown, indent=2))
    return 0
