"""`railsight eval --scenes DIR`: the full pipeline on scenes with truth; metrics as JSON.

    railsight synth heldout/ --n 24 --seed 1000      # held-out scenes (seeds below the training range)
    railsight eval --scenes heldout/ --out report.json
"""

from __future__ import annotations

import argparse
import json

from service.commands.scene_sets import add_run_options, over_scenes, scene_pairs, write_report
from service.errors import BadOption


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run the pipeline on scenes with truth and report metrics as JSON")
    p.add_argument("--scenes", required=True, help="directory of NAME.tif + NAME.geojson pairs (railsight synth)")
    p.add_argument("--out", help="also write the full report (with per-scene results) to this JSON file")
    add_run_options(p)
    p.add_argument("--limit", type=int, help="evaluate only the first N scenes")
    p.add_argument("--per-scene", action="store_true", help="print per-scene results too")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.evaluation import evaluate
    from models.spec import SHIPPED_WEIGHTS, read_meta
    from service.commands.detect import settings_from_args
    from service.pipeline import model_spec_from_settings, options_from_settings

    if args.limit is not None and args.limit < 1:
        raise BadOption(f"--limit must be at least 1, got {args.limit}")
    pairs = scene_pairs([args.scenes], args.workers)
    pairs = pairs[: args.limit] if args.limit else pairs
    settings = settings_from_args(args)
    spec = model_spec_from_settings(settings)
    options = options_from_settings(settings, model_tile=args.model_tile, tta=args.tta,
                                   view_metadata=not args.ignore_view_metadata)
    options.check()
    model_info: dict = {"source": spec.describe()}
    if not spec.factory:
        meta = read_meta(spec.weights or SHIPPED_WEIGHTS)
        model_info.update(name=meta.name, version=meta.version,
                          trained_on=meta.extra.get("hardware"), train_seconds=meta.extra.get("train_seconds"),
                          steps=meta.extra.get("steps"), confidence_floors=meta.own_floors(options.tta))
    report = over_scenes(settings, pairs, options, spec, "eval", args.quiet, evaluate)
    report = {"model": model_info, "scene_dir": str(args.scenes), **report}
    write_report(report, args.out)
    shown = report if args.per_scene else {k: v for k, v in report.items() if k != "per_scene"}
    print(json.dumps(shown, indent=2))
    return 0
