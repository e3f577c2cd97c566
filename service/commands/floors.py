"""`railsight floors --scenes DIR`: choose a weights file's confidence floors on scenes with truth.

    railsight floors --scenes val/ --scenes val2/ --tta 4 --write tuned.pt

Each scene is detected once without floors, every candidate floor is scored on the pooled scenes
(``models.floor_choice``), and the table and the chosen floors are printed as JSON. ``--write``
saves a copy of the weights carrying them, for the number of test-time views they were chosen for.
Choose floors on scenes the weights were not trained on, and report accuracy on others again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.commands.scene_sets import add_run_options, over_scenes, scene_pairs, write_report
from service.errors import BadOption
from service.pipeline import DetectOptions, options_from_settings
from service.settings import PipelineSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("floors", help="choose a weights file's confidence floors on scenes with truth")
    p.add_argument("--scenes", required=True, action="append",
                   help="directory of NAME.tif + NAME.geojson pairs; repeat to pool several")
    p.add_argument("--write", help="save a copy of the weights with the chosen floors here (may be --weights itself)")
    p.add_argument("--out", help="also write the report to this JSON file")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from models.floor_choice import FLOORS, choose, classes_with_truth, describe, detect_all, write_floors
    from models.spec import SHIPPED_WEIGHTS
    from service.commands.detect import settings_from_args
    from service.pipeline import model_meta, model_spec_from_settings

    pairs = scene_pairs(args.scenes, args.workers)
    settings = settings_from_args(args)
    spec = model_spec_from_settings(settings)
    if args.write and spec.factory:
        raise BadOption("--write needs a weights file: the model comes from a factory (RAILSIGHT_MODEL_FACTORY)")
    if args.write and not classes_with_truth(pairs):  # known before a scene is detected
        raise BadOption(f"no floor to write: the scenes hold no {' or '.join(FLOORS)} truth")
    options = pass_options(settings, model_tile=args.model_tile, tta=args.tta, view_metadata=not args.ignore_view_metadata)
    scenes = over_scenes(settings, pairs, options, spec, "floors", args.quiet, detect_all)
    choice = choose(scenes, current=model_meta(spec).own_floors(options.tta))
    chosen = {cls: c["chosen"] for cls, c in choice.items() if c["chosen"] is not None}
    chosen_on = describe(choice, options.tta, args.scenes, len(scenes))
    report = {"model": spec.describe(), "views": options.tta, "scenes": len(scenes), "scene_dirs": args.scenes,
              "chosen": chosen, "classes": choice, "chosen_on": chosen_on}
    if args.write:
        weights = Path(spec.weights or SHIPPED_WEIGHTS)
        report["written"] = str(write_floors(weights, Path(args.write), chosen, options.tta, chosen_on))
    write_report(report, args.out)
    print(json.dumps(report, indent=2))
    return 0


def pass_options(settings: PipelineSettings, **overrides: Any) -> DetectOptions:
    """The options of the one detection pass every candidate floor is scored from: nothing may be
    dropped before it, neither by the weights' own floors nor by a minimum confidence the settings
    (RAILSIGHT_MIN_CONFIDENCE) carry."""
    options = options_from_settings(settings, own_floors=False, min_confidence=0.0, **overrides)
    options.check()
    return options
