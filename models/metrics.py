"""Detection metrics, on geometries in a metric CRS (metres).

- Objects (railcars at IoU >= 0.5, tarped cargo at IoU >= 0.3): one-to-one matching. Candidate
  pairs are the truth/prediction pairs whose IoU reaches the threshold; the matching takes as many
  of them as possible (ties broken by the larger total IoU), solved exactly with the Hungarian method
  on each connected group of candidates. ``tp`` = matched pairs, ``fp`` = predictions left over,
  ``fn`` = truths left over; precision = tp / (tp + fp), recall = tp / (tp + fn), F1 their harmonic
  mean, i.e. 2 tp / (2 tp + fp + fn). A ratio with a zero denominator is ``None`` (JSON null),
  not a made-up 0 or 1; F1 is ``None`` only when there is nothing at all (no truth, no
  prediction), and 0 when there is truth but no prediction or the other way round.
- Count error: predicted count - true count, and that over the true count.
- Area IoU: area(union of truths & union of predictions) / area(union of both).
- Tracks: every centre line is sampled every ``step_m`` (1 m); recall is the share of truth samples
  within ``tolerance_m`` (2.5 m) of some predicted line, precision the share of predicted samples
  within 2.5 m of some truth line. Both are length-weighted, because samples are evenly spaced.

Every scorer returns *raw counts* that add up over scenes (``merge_counts``), and ``rates`` turns
summed counts into ratios, so totals over a set of scenes are micro-averages, not means of means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from pyproj import CRS, Transformer
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

RAILCAR_IOU = 0.5
CARGO_IOU = 0.3
TRACK_TOLERANCE_M = 2.5
TRACK_STEP_M = 1.0
# A predicted track sample this close to another predicted line is drawn twice: true tracks run at
# least 4.5 m apart, so only the first metres of a branch at a switch come this close.
TRACK_DOUBLED_M = 1.5


# ---------------------------------------------------------------------------- objects


def iou_pairs(truth: Sequence[BaseGeometry], pred: Sequence[BaseGeometry]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (truth index, prediction index, IoU) with a positive intersection."""
    if not truth or not pred:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    tree = shapely.STRtree(list(pred))
    ti, pj = tree.query(list(truth), predicate="intersects")
    t_arr = np.asarray(truth, dtype=object)[ti]
    p_arr = np.asarray(pred, dtype=object)[pj]
    inter = shapely.area(shapely.intersection(t_arr, p_arr))
    union = shapely.area(t_arr) + shapely.area(p_arr) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    keep = iou > 0
    return ti[keep], pj[keep], iou[keep]


def match_objects(
    truth: Sequence[BaseGeometry], pred: Sequence[BaseGeometry], iou_threshold: float
) -> list[tuple[int, int, float]]:
    """One-to-one matches (truth index, prediction index, IoU) with IoU >= ``iou_threshold``."""
    ti, pj, iou = iou_pairs(truth, pred)
    ok = iou >= iou_threshold
    ti, pj, iou = ti[ok], pj[ok], iou[ok]
    if not len(ti):
        return []
    nt, npred = len(truth), len(pred)
    graph = coo_matrix((np.ones(len(ti)), (ti, pj + nt)), shape=(nt + npred, nt + npred))
    _, component = connected_components(graph, directed=False)
    matches: list[tuple[int, int, float]] = []
    for comp in np.unique(component[ti]):
        sel = component[ti] == comp
        rows, row_index = np.unique(ti[sel], return_inverse=True)
        cols, col_index = np.unique(pj[sel], return_inverse=True)
        weight = np.zeros((len(rows), len(cols)))
        weight[row_index, col_index] = 1.0 + iou[sel]  # count first, IoU breaks ties
        r, c = linear_sum_assignment(weight, maximize=True)
        for a, b in zip(r, c, strict=True):
            if weight[a, b] > 0:
                matches.append((int(rows[a]), int(cols[b]), float(weight[a, b] - 1.0)))
    return sorted(matches)


def object_counts(truth: Sequence[BaseGeometry], pred: Sequence[BaseGeometry], iou_threshold: float) -> dict:
    """Raw counts for one scene: tp, fp, fn, the summed IoU of matches, and the true/predicted counts."""
    matches = match_objects(truth, pred, iou_threshold)
    tp = len(matches)
    return {
        "tp": tp,
        "fp": len(pred) - tp,
        "fn": len(truth) - tp,
        "matched_iou_sum": float(sum(m[2] for m in matches)),
        "count_true": len(truth),
        "count_pred": len(pred),
    }


def area_counts(truth: Sequence[BaseGeometry], pred: Sequence[BaseGeometry]) -> dict:
    """Intersection and union areas (m²) of the two unions, for area IoU."""
    t = shapely.union_all(list(truth)) if truth else shapely.Polygon()
    p = shapely.union_all(list(pred)) if pred else shapely.Polygon()
    return {"area_intersection_m2": float(t.intersection(p).area), "area_union_m2": float(t.union(p).area)}


# ---------------------------------------------------------------------------- tracks


def sample_lines(lines: Iterable[BaseGeometry], step_m: float = TRACK_STEP_M) -> np.ndarray:
    """Evenly spaced points along each line (each part of a MultiLineString), as an array of shapely
    Points: a part of length L gets n = ceil(L / step_m) samples, one at the middle of each of n
    equal pieces, so every sample stands for at most ``step_m`` of line and none sits on an end."""
    return sample_lines_owned(lines, step_m)[0]


def sample_lines_owned(lines: Iterable[BaseGeometry], step_m: float = TRACK_STEP_M) -> tuple[np.ndarray, np.ndarray]:
    """``sample_lines``, and the index in ``lines`` of the line each sample lies on."""
    points: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    for k, geom in enumerate(lines):
        for part in getattr(geom, "geoms", [geom]):
            if part.is_empty or part.length == 0:
                continue
            n = max(1, math.ceil(part.length / step_m))
            distances = (np.arange(n) + 0.5) * (part.length / n)  # n evenly spaced, centred samples
            points.append(shapely.line_interpolate_point(part, distances))
            owners.append(np.full(n, k))
    if not points:
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64)
    return np.concatenate(points), np.concatenate(owners)


def track_counts(
    truth: Sequence[BaseGeometry],
    pred: Sequence[BaseGeometry],
    tolerance_m: float = TRACK_TOLERANCE_M,
    step_m: float = TRACK_STEP_M,
) -> dict:
    """Raw counts: samples of truth lines near a prediction (and all of them), and the converse."""
    t_pts = sample_lines(truth, step_m)
    p_pts, p_owner = sample_lines_owned(pred, step_m)
    t_union = shapely.union_all(list(truth)) if truth else None
    p_union = shapely.union_all(list(pred)) if pred else None
    t_hit = int(shapely.dwithin(t_pts, p_union, tolerance_m).sum()) if len(t_pts) and p_union is not None else 0
    p_hit = int(shapely.dwithin(p_pts, t_union, tolerance_m).sum()) if len(p_pts) and t_union is not None else 0
    return {
        "pred_doubled": doubled_samples(pred, p_pts, p_owner),
        "truth_samples": int(len(t_pts)),
        "truth_hits": t_hit,
        "pred_samples": int(len(p_pts)),
        "pred_hits": p_hit,
        "truth_length_m": float(sum(g.length for g in truth)),
        "pred_length_m": float(sum(g.length for g in pred)),
        "truth_lines": len(truth),
        "pred_lines": len(pred),
    }


def doubled_samples(lines: Sequence[BaseGeometry], points: np.ndarray, owner: np.ndarray,
                    near_m: float = TRACK_DOUBLED_M) -> int:
    """How many of the lines' samples (``points``, on lines ``owner``: ``sample_lines_owned``) lie
    within ``near_m`` of another of the lines: track drawn twice, which recall and precision do not
    see (both copies lie on the truth)."""
    if len(lines) < 2 or not len(points):
        return 0
    sample, near = shapely.STRtree(list(lines)).query(points, predicate="dwithin", distance=near_m)
    return int(np.unique(sample[owner[sample] != near]).size)


# ---------------------------------------------------------------------------- ratios


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def _f1(p: float | None, r: float | None) -> float | None:
    """Harmonic mean; one side undefined (nothing predicted, or nothing to find) while the other is
    defined means the defined side is 0, and so is F1."""
    if p is None and r is None:
        return None
    if p is None or r is None:
        return 0.0
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _round(v: float | None, n: int = 4) -> float | None:
    return None if v is None else round(float(v), n)


def object_rates(c: dict) -> dict:
    p = _ratio(c["tp"], c["tp"] + c["fp"])
    r = _ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "precision": _round(p),
        "recall": _round(r),
        "f1": _round(_f1(p, r)),
        "mean_matched_iou": _round(_ratio(c["matched_iou_sum"], c["tp"])),
        "count_true": c["count_true"],
        "count_pred": c["count_pred"],
        "count_error": c["count_pred"] - c["count_true"],
        "count_error_rel": _round(_ratio(c["count_pred"] - c["count_true"], c["count_true"])),
        "tp": c["tp"],
        "fp": c["fp"],
        "fn": c["fn"],
    }


def area_rates(c: dict) -> dict:
    return {"area_iou": _round(_ratio(c["area_intersection_m2"], c["area_union_m2"]))}


def track_rates(c: dict) -> dict:
    p = _ratio(c["pred_hits"], c["pred_samples"])
    r = _ratio(c["truth_hits"], c["truth_samples"])
    return {
        "recall": _round(r),
        "precision": _round(p),
        "f1": _round(_f1(p, r)),
        "truth_length_m": round(c["truth_length_m"], 1),
        "pred_length_m": round(c["pred_length_m"], 1),
        # Found lines per true line: recall and precision give credit for many short pieces along a
        # track, which an analyst would rather have as one line (1.0 is one line per true track).
        "truth_lines": c["truth_lines"],
        "pred_lines": c["pred_lines"],
        "lines_per_true_line": _round(_ratio(c["pred_lines"], c["truth_lines"]), 2),
        "doubled_share": _round(_ratio(c["pred_doubled"], c["pred_samples"])),
    }


def merge_counts(items: Iterable[dict]) -> dict:
    """Sum raw count dicts key by key (nested one level: {class: {count: value}})."""
    total: dict = {}
    for item in items:
        for cls, counts in item.items():
            slot = total.setdefault(cls, {})
            for k, v in counts.items():
                slot[k] = slot.get(k, 0) + v
    return total


# ---------------------------------------------------------------------------- scenes (GeoJSON)


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The UTM zone holding a WGS 84 point (north or south)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def features_by_class(collection: dict, crs: CRS) -> dict[str, list[BaseGeometry]]:
    """An RFC 7946 FeatureCollection (WGS 84) -> {class: [geometries in ``crs``]}."""
    to_metric = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = to_metric.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    out: dict[str, list[BaseGeometry]] = {"railcar": [], "tarped_cargo": [], "track": []}
    for feat in collection.get("features", []):
        cls = (feat.get("properties") or {}).get("class")
        if cls not in out or not feat.get("geometry"):
            continue
        geom = shapely.transform(shape(feat["geometry"]), project)
        if cls != "track":
            geom = shapely.make_valid(geom) if not geom.is_valid else geom
        if not geom.is_empty:
            out[cls].append(geom)
    return out


def metric_crs_of(collection: dict) -> CRS:
    """A UTM CRS for a FeatureCollection, chosen at the centre of its bounds."""
    geoms = [shape(f["geometry"]) for f in collection.get("features", []) if f.get("geometry")]
    if not geoms:
        return CRS.from_epsg(32631)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    return utm_crs_for((x0 + x1) / 2, (y0 + y1) / 2)


def scene_counts(truth: dict, pred: dict, crs: CRS | None = None) -> dict:
    """Raw counts for one scene from two FeatureCollections (WGS 84): the truth and the detections."""
    crs = crs or metric_crs_of(truth)
    t = features_by_class(truth, crs)
    p = features_by_class(pred, crs)
    return {cls: class_counts(cls, t[cls], p[cls]) for cls in ("railcar", "tarped_cargo", "track")}


def class_counts(cls: str, truth: Sequence[BaseGeometry], pred: Sequence[BaseGeometry]) -> dict:
    """Raw counts for one class of one scene, from geometries in a metric CRS."""
    if cls == "railcar":
        return object_counts(truth, pred, RAILCAR_IOU)
    if cls == "tarped_cargo":
        return {**object_counts(truth, pred, CARGO_IOU), **area_counts(truth, pred)}
    if cls == "track":
        return track_counts(truth, pred)
    raise ValueError(f"unknown class {cls!r}")


def rates(counts: dict) -> dict:
    """Summed raw counts -> the reported metrics per class."""
    out = {}
    if "railcar" in counts:
        out["railcar"] = object_rates(counts["railcar"])
    if "tarped_cargo" in counts:
        out["tarped_cargo"] = {**object_rates(counts["tarped_cargo"]), **area_rates(counts["tarped_cargo"])}
    if "track" in counts:
        out["track"] = track_rates(counts["track"])
    return out
