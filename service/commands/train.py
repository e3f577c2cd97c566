"""`railsight train`: train the model on synthetic scenes, or fine-tune it on your own labels.

    railsight train --steps 3000 --out my.pt                      # from scratch, synthetic scenes
    railsight train --init shipped --scenes a.tif,b.tif --labels a.geojson,b.geojson --out tuned.pt
"""

from __future__ import annotations

import argparse
import sys

from models.spec import PRECISIONS
from service.errors import BadOption


def path_list(text: str) -> tuple[str, ...]:
    items = tuple(p.strip() for p in text.split(",") if p.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of files, got {text!r}")
    return items


def int_list(text: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in text.split(","))
    except ValueError:  # an empty item or not a whole number
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas such as 320,576, got {text!r}") from None
    return items


def season_share(text: str) -> tuple[tuple[str, float], ...]:
    pairs = []
    for item in text.split(","):
        season, _, share = item.partition("=")
        try:
            pairs.append((season.strip(), float(share)))
        except ValueError:  # no "=", or no number after it
            raise argparse.ArgumentTypeError(
                f"expected SEASON=SHARE[,SEASON=SHARE] such as snow=0.2,winter=0.2, got {text!r}") from None
    return tuple(pairs)


def pixel_size_share(text: str) -> tuple[tuple[float, float], float]:
    sizes, _, share = text.partition("=")
    low, _, high = sizes.partition("-")
    try:
        return (float(low), float(high)), float(share)
    except ValueError:  # no "=" or "-", or not numbers
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH=SHARE in metres such as 0.75-1.0=0.3, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the model (synthetic scenes) or fine-tune it on labelled scenes")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 2000; 300 when fine-tuning)")
    p.add_argument("--batch", type=int_list, default=(8,), metavar="N[,N...]",
                   help="crops per step (default 8); one per --crop side to give each its own")
    p.add_argument("--crop", type=int_list, default=(256,), metavar="PX[,PX...]",
                   help="crop side in model pixels, a multiple of 32 (default 256); several, e.g. 320,576, "
                        "are trained on in turn, one per step")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, scenes, crops (default 0)")
    p.add_argument("--out", help="weights file to write (default railsight-trained.pt / railsight-finetuned.pt)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA if present")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="default: bf16 autocast on CUDA and on CPUs with native bf16 (AMX), else fp32")
    p.add_argument("--init", help="start from 'shipped' or a weights file (default: from scratch; "
                                  "shipped when fine-tuning)")
    p.add_argument("--scenes", type=path_list, default=(), help="fine-tune on these scenes: a.tif,b.tif")
    p.add_argument("--labels", type=path_list, default=(),
                   help="their labels, in the same order: a.geojson,b.geojson (polygons/lines with "
                        "properties.class railcar, tarped_cargo or track; any CRS)")
    p.add_argument("--labels-crs", help="CRS of the labels when the files do not say (default WGS 84)")
    p.add_argument("--synth-share", type=float, help="fine-tuning: share of synthetic scenes mixed in (default 0)")
    p.add_argument("--season-share", type=season_share, default=(), metavar="SEASON=SHARE[,...]",
                   help="render these shares of the synthetic scenes in these seasons, e.g. snow=0.2,winter=0.2 (default: "
                        "seasons drawn as the engine draws them)")
    p.add_argument("--pixel-size-share", type=pixel_size_share, metavar="LOW-HIGH=SHARE",
                   help="render this share of the synthetic scenes at a pixel size in LOW-HIGH metres, e.g. "
                        "0.75-1.0=0.3 (default: 0.25-1.0 m for all)")
    p.add_argument("--shift-share", type=float, default=0.0, metavar="SHARE",
                   help="share of crops given a wide photometric shift (colour cast, grey, gamma, contrast, "
                        "blur or sharpening, noise, JPEG) standing in for other sensors (default 0)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="write an exponential moving average of the weights with this decay, e.g. 0.999 "
                        "(the last raw weights go to OUT with suffix .raw.pt; default: raw weights only)")
    p.add_argument("--distil-views", type=int, metavar="N",
                   help="also train towards the --init weights' own mean over N test-time views (2, 4 or 8), "
                        "which scores higher than one view: self-distillation (default: labels alone)")
    p.add_argument("--gap-weight", type=float, default=0.0, metavar="W",
                   help="extra weight in the core loss of object pixels outside their cores, the rim that parts "
                        "coupled cars (default 0: none)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3; 5e-4 from --init)")
    p.add_argument("--workers", type=int, help="data loader processes rendering scenes (default 1; 0 = inline)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--scene-px", type=int, default=768, help="side of each rendered synthetic scene (default 768)")
    p.add_argument("--crops-per-scene", type=int,
                   help="crops drawn from each rendered scene before it is replaced (default 24; 8 for your scenes)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    p.add_argument("--max-minutes", type=float, help="wall-time budget: stop early (schedule follows the clock)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint (OUT.ckpt) if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from models.training import TrainConfig

    finetune = bool(args.scenes or args.labels)
    cfg = TrainConfig(
        steps=args.steps if args.steps is not None else (300 if finetune else 2000),
        batch=args.batch,
        crop=args.crop,
        seed=args.seed,
        out=args.out or ("railsight-finetuned.pt" if finetune else "railsight-trained.pt"),
        device=args.device,
        precision=args.precision,
        init=args.init or ("shipped" if finetune else None),
        lr=args.lr,
        scenes=tuple(args.scenes),
        labels=tuple(args.labels),
        labels_crs=args.labels_crs,
        synth_share=args.synth_share,
        season_share=args.season_share,
        pixel_size_share=args.pixel_size_share,
        shift_share=args.shift_share,
        ema=args.ema,
        distil_views=args.distil_views,
        gap_weight=args.gap_weight,
        synth_size_px=args.scene_px,
        crops_per_scene=args.crops_per_scene,
        workers=args.workers,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None,
        progress=not args.quiet,
    )
    try:
        cfg.check()
    except ValueError as exc:
        raise BadOption(str(exc)) from exc
    if args.workers is not None and args.workers < 0:
        raise BadOption(f"--workers must be 0 or more, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise BadOption(f"--threads must be at least 1, got {args.threads}")
    if args.scene_px < 128:
        raise BadOption(f"--scene-px must be at least 128, got {args.scene_px}")
    return cfg


def run(args: argparse.Namespace) -> int:
    from models.labels import LabelError
    from models.training import train

    cfg = config_from_args(args)
    try:
        result = train(cfg, log=lambda msg: print(msg, file=sys.stderr))
    except LabelError as exc:
        raise BadOption(str(exc)) from exc
    last = f", final loss {result.losses[-1]:.3f}" if result.losses else ""
    print(f"{result.out}: {result.steps} steps in {result.seconds:.0f} s on {result.meta.extra['hardware']}{last}")
    return 0
