"""Evaluation: the whole pipeline on scenes with truth, scored per class, overall and per condition.

A scene directory holds ``NAME.tif`` and ``NAME.geojson`` pairs as the data engine writes them
(``railsight synth DIR``); ``NAME.labels.tif`` and anything without truth is skipped. Each scene runs
through ``service.pipeline.detect_scene`` exactly as ``railsight detect`` would, and is scored by
``models.metrics`` (its consists by ``models.consist_metrics``) in the UTM zone of its truth. Totals
are micro-averages (counts summed over scenes). Conditions come from the truth file's ``conditions``
member and are bucketed:

    pixel_size   0.25-0.40, 0.40-0.60, 0.60-0.80, 0.80-1.00 m (scene pixel size)
    season       as the engine names it (summer, spring, autumn, winter, snow, arid)
    haze         clear (< 0.08), light (< 0.3), heavy (>= 0.3)
    compression  none, jpeg 40-69, jpeg 70-95 (the engine's JPEG quality; since engine 1.5.0 a real
                 JPEG with colour at half resolution, which costs coarse scenes most: models/MODEL.md)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.consist_metrics import consist_counts, consist_rates
from models.metrics import merge_counts, metric_crs_of, rates, scene_counts

PIXEL_BUCKETS = ((0.40, "0.25-0.40 m"), (0.60, "0.40-0.60 m"), (0.80, "0.60-0.80 m"), (float("inf"), "0.80-1.00 m"))
HAZE_BUCKETS = ((0.08, "clear"), (0.30, "light"), (float("inf"), "heavy"))
JPEG_BUCKETS = ((70, "jpeg 40-69"), (float("inf"), "jpeg 70-95"))
LEAN_BUCKETS = ((1e-9, "nadir"), (15.0, "5-15 deg off nadir"), (float("inf"), "15-30 deg off nadir"))
CONDITION_KEYS = ("pixel_size", "season", "haze", "compression", "off_nadir")
LARGE_YARD_CARS = 70
TARGETS = {
    "railcar_f1": 0.95,
    "tarped_cargo_f1": 0.85,
    "track_recall": 0.90,
    "track_precision": 0.90,
    "large_yard_count_error_rel": 0.03,
}


class EvaluationError(ValueError):
    code = "bad_eval_input"


def find_scenes(directory: str | Path) -> list[tuple[Path, Path]]:
    """(image, truth) pairs in a directory, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EvaluationError(f"scene directory not found: {directory}")
    pairs = []
    for image in sorted(directory.glob("*.tif")):
        if image.name.endswith(".labels.tif"):
            continue
        truth = image.with_suffix(".geojson")
        if truth.is_file():
            pairs.append((image, truth))
    if not pairs:
        raise EvaluationError(f"no scenes with truth in {directory} (expected NAME.tif with NAME.geojson)")
    return pairs


def _bucket(value: float | None, buckets: tuple[tuple[float, str], ...]) -> str:
    if value is None:
        return "unknown"
    for limit, name in buckets:
        if value < limit:
            return name
    return buckets[-1][1]


def scene_conditions(truth: dict) -> dict[str, Any]:
    """The engine's conditions for a scene (truth ``conditions`` member, or its ``properties``)."""
    cond = truth.get("conditions") or (truth.get("properties") or {}).get("conditions") or {}
    return cond if isinstance(cond, dict) else {}


def condition_buckets(cond: dict[str, Any]) -> dict[str, str]:
    px = cond.get("pixel_size_m")
    haze = cond.get("haze")
    return {
        "pixel_size": _bucket(float(px) if px is not None else None, PIXEL_BUCKETS),
        "season": str(cond.get("season", "unknown")),
        "haze": _bucket(float(haze) if haze is not None else None, HAZE_BUCKETS),
        "compression": _compression(cond),
        # Engines before 1.7.0 drew every scene from straight above and did not say so.
        "off_nadir": _bucket(float(cond.get("off_nadir_deg") or 0.0), LEAN_BUCKETS) if cond else "unknown",
    }


def _compression(cond: dict[str, Any]) -> str:
    """A truth file without the member says nothing (unknown); the engine writes None for a scene
    it did not compress."""
    if "jpeg_quality" not in cond:
        return "unknown"
    quality = cond["jpeg_quality"]
    return "none" if quality is None else _bucket(float(quality), JPEG_BUCKETS)


def _rates(counts: dict) -> dict[str, Any]:
    """``models.metrics.rates`` per class, and how well the consists follow the true ones."""
    out = rates(counts)
    if "consists" in counts:
        out["consists"] = consist_rates(counts["consists"])
    return out


def summarise(scenes: list[dict]) -> dict[str, Any]:
    """Per-scene records (``counts``, ``buckets``) -> overall and per-condition metrics, targets."""
    overall = _rates(merge_counts(s["counts"] for s in scenes))
    per_condition: dict[str, dict[str, Any]] = {}
    for key in CONDITION_KEYS:
        groups: dict[str, list[dict]] = {}
        for s in scenes:
            groups.setdefault(s["buckets"][key], []).append(s)
        per_condition[key] = {
            name: {"scenes": len(group), **_rates(merge_counts(g["counts"] for g in group))}
            for name, group in sorted(groups.items())
        }
    large = [s for s in scenes if s["counts"]["railcar"]["count_true"] >= LARGE_YARD_CARS]
    large_errors = [
        {"scene": s["scene"], "count_true": s["counts"]["railcar"]["count_true"],
         "count_pred": s["counts"]["railcar"]["count_pred"],
         "count_error_rel": round((s["counts"]["railcar"]["count_pred"] - s["counts"]["railcar"]["count_true"])
                                  / s["counts"]["railcar"]["count_true"], 4)}
        for s in large
    ]
    worst_large = max((abs(e["count_error_rel"]) for e in large_errors), default=None)
    checks = {
        "railcar_f1": overall["railcar"]["f1"],
        "tarped_cargo_f1": overall["tarped_cargo"]["f1"],
        "track_recall": overall["track"]["recall"],
        "track_precision": overall["track"]["precision"],
        "large_yard_count_error_rel": worst_large,
    }
    has_truth = {
        "railcar_f1": overall["railcar"]["count_true"] > 0,
        "tarped_cargo_f1": overall["tarped_cargo"]["count_true"] > 0,
        "track_recall": overall["track"]["truth_length_m"] > 0,
        "track_precision": overall["track"]["truth_length_m"] > 0,
        "large_yard_count_error_rel": bool(large),
    }
    targets = {}
    for name, value in checks.items():
        goal = TARGETS[name]
        if value is None:
            # nothing to measure -> None; truth that got no detections at all -> not met
            met = False if has_truth[name] else None
        elif name == "large_yard_count_error_rel":
            met = value <= goal
        else:
            met = value >= goal
        targets[name] = {"value": value, "target": goal, "met": met}
    return {"overall": overall, "per_condition": per_condition,
            "large_yards": large_errors, "targets": targets}


def evaluate(
    pairs: list[tuple[Path, Path]],
    detect: Callable[[Path], dict],
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Run ``detect`` (scene path -> FeatureCollection) on every scene and score it."""
    scenes = []
    for i, (image, truth_path) in enumerate(pairs):
        truth = json.loads(truth_path.read_text())
        started = time.perf_counter()
        detections = detect(image)
        summary = detections.get("summary") or {}
        # The pipeline's own time for the scene where it says (a caller may detect scenes ahead, so
        # the wait here is not the scene's time), else the wait.
        seconds = summary.get("timings", {}).get("total_s", time.perf_counter() - started)
        crs = metric_crs_of(truth)
        counts = {**scene_counts(truth, detections, crs), "consists": consist_counts(truth, detections, crs)}
        cond = scene_conditions(truth)
        scenes.append({
            "scene": image.name,
            "conditions": {k: cond.get(k) for k in ("pixel_size_m", "season", "haze", "crs") if k in cond},
            "buckets": condition_buckets(cond),
            "view": summary.get("view"),  # the view the pipeline ran with (service.view_geometry), or None
            "seconds": round(seconds, 2),
            "counts": counts,
            "metrics": _rates(counts),
        })
        if progress:
            progress(i + 1, len(pairs), image.name)
    return {"scenes": len(scenes), **summarise(scenes), "per_scene": scenes}
