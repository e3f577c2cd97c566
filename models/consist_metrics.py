"""How well the detected consists follow the true ones (kernels.consists), scored on matched cars.

A coupling is two cars next to each other in one consist. The truth's couplings come from the true
car footprints by the pipeline's rules at fixed, tight settings (``TRUTH_RULES``: nose to tail within
3 m, centres within 1.5 m of each other's axes): the engine's cars stand 0.6-1.4 m apart in a train
and exactly on their track, so these are its trains less any car the scene's edge hides. Only
couplings between cars that were both found (matched one to one at IoU >= 0.5) are scored, so a
missed car does not count twice, as a miss and as a broken consist:

- ``couplings_true``: true couplings of two matched cars; ``couplings_pred``: detected couplings
  of two matched cars; ``couplings_agree``: those in both. Precision and recall follow.
- ``consists_true``: true consists of two or more cars, every car matched; ``consists_exact``:
  those whose cars make up one detected consist, no car more or fewer ("a three-car set").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyproj import CRS

from kernels.consists import CouplingRules, car_axes, find_consists
from kernels.vectorise import box_sides
from models.metrics import RAILCAR_IOU, _ratio, _round, features_by_class, match_objects

TRUTH_RULES = CouplingRules(gap_m=3.0, max_offset_m=1.5, max_turn_deg=15.0)
KEYS = ("couplings_true", "couplings_pred", "couplings_agree", "consists_true", "consists_exact")


def consist_counts(truth: dict, pred: dict, crs: CRS) -> dict[str, int]:
    """Raw counts (they add up over scenes) for one scene's two FeatureCollections (WGS 84)."""
    true_cars = features_by_class(truth, crs)["railcar"]
    found = [f for f in pred.get("features", []) if (f.get("properties") or {}).get("class") == "railcar"]
    found_cars = features_by_class({"features": found}, crs)["railcar"]
    if len(found_cars) != len(found):  # a feature without a usable geometry: the scene is not scored
        return dict.fromkeys(KEYS, 0)
    matches = match_objects(true_cars, found_cars, RAILCAR_IOU)
    to_true = {p: t for t, p, _ in matches}
    to_found = {t: p for t, p, _ in matches}
    true_consist, true_position = _true_consists(true_cars)
    found_consist, found_position = _found_consists([f["properties"] for f in found])
    true_pairs = {(a, b) for a, b in _couplings(true_consist, true_position) if a in to_found and b in to_found}
    found_pairs = {(min(to_true[a], to_true[b]), max(to_true[a], to_true[b]))
                   for a, b in _couplings(found_consist, found_position) if a in to_true and b in to_true}  # fmt: skip
    whole = [g for g in _groups(true_consist) if len(g) > 1 and all(t in to_found for t in g)]
    found_groups = _groups(found_consist)
    exact = sum(set(found_groups[found_consist[to_found[g[0]]]]) == {to_found[t] for t in g} for g in whole)
    return {"couplings_true": len(true_pairs), "couplings_pred": len(found_pairs),
            "couplings_agree": len(true_pairs & found_pairs), "consists_true": len(whole), "consists_exact": exact}


def consist_rates(c: dict[str, int]) -> dict[str, Any]:
    """Summed ``consist_counts`` -> precision and recall of the couplings, share of consists exact."""
    return {"coupling_precision": _round(_ratio(c["couplings_agree"], c["couplings_pred"])),
            "coupling_recall": _round(_ratio(c["couplings_agree"], c["couplings_true"])),
            "consists_exact_share": _round(_ratio(c["consists_exact"], c["consists_true"])), **c}


def _true_consists(cars: list) -> tuple[np.ndarray, np.ndarray]:
    """(consist, position) of true cars (footprints in metres), by ``TRUTH_RULES``."""
    if not cars:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    centre, axis, half = car_axes(*box_sides(np.asarray(cars, dtype=object)))
    found = find_consists(centre, axis, half, 1.0, rules=TRUTH_RULES)
    return found.consist, found.position


def _found_consists(props: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(consist, position) of detected cars from their ``consist_id`` and ``consist_position``; a
    car without them is a consist of its own."""
    names = [p.get("consist_id") or f"lone-{k}" for k, p in enumerate(props)]
    _, consist = np.unique(np.array(names, dtype=object), return_inverse=True)
    position = np.array([int(p.get("consist_position") or 1) for p in props], dtype=np.int64)
    return consist.astype(np.int64), position


def _couplings(consist: np.ndarray, position: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (lower index first) of cars next to each other in one consist."""
    slot = {(int(c), int(p)): k for k, (c, p) in enumerate(zip(consist.tolist(), position.tolist(), strict=True))}
    out = set()
    for (c, p), k in slot.items():
        nxt = slot.get((c, p + 1))
        if nxt is not None:
            out.add((min(k, nxt), max(k, nxt)))
    return out


def _groups(consist: np.ndarray) -> list[list[int]]:
    """The cars (indices) of each consist, by consist number."""
    if not len(consist):
        return []
    order = np.argsort(consist, kind="stable")
    cuts = np.flatnonzero(np.diff(consist[order])) + 1
    groups: list[list[int]] = [[] for _ in range(int(consist.max()) + 1)]
    for part in np.split(order, cuts):
        groups[int(consist[part[0]])] = part.tolist()
    return groups
