"""Metric code against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import LineString, box, mapping

from models.metrics import (
    area_counts,
    area_rates,
    match_objects,
    merge_counts,
    object_counts,
    object_rates,
    rates,
    scene_counts,
    track_counts,
    track_rates,
    utm_crs_for,
)


def test_railcar_precision_recall_f1_by_hand():
    truth = [box(0, 0, 10, 10), box(20, 0, 30, 10)]
    pred = [
        box(2, 0, 12, 10),  # IoU with truth 0: 80 / 120 = 0.667 -> match
        box(25, 0, 35, 10),  # IoU with truth 1: 50 / 150 = 0.333 -> below 0.5
        box(100, 100, 110, 110),  # nowhere
    ]
    c = object_counts(truth, pred, 0.5)
    assert (c["tp"], c["fp"], c["fn"]) == (1, 2, 1)
    r = object_rates(c)
    assert r["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(0.4)  # 2 * (1/3) * (1/2) / (5/6)
    assert r["mean_matched_iou"] == pytest.approx(2 / 3, abs=1e-4)


def test_matching_is_one_to_one():
    truth = [box(0, 0, 10, 10)]
    pred = [box(0, 0, 10, 10), box(1, 0, 11, 10)]  # both would match alone
    c = object_counts(truth, pred, 0.5)
    assert (c["tp"], c["fp"], c["fn"]) == (1, 1, 0)
    assert match_objects(truth, pred, 0.5) == [(0, 0, 1.0)]


def test_matching_maximises_the_number_of_pairs_not_greedy():
    # P1 overlaps A best (IoU 80/140 = 0.571) but can also take B (40/130 = 0.308); P2 can only take A
    # (50/100 = 0.5). Greedy by IoU pairs P1-A and leaves P2 alone; the right answer is two pairs.
    a, b = box(0, 0, 10, 10), box(10, 0, 15, 10)
    p1, p2 = box(2, 0, 14, 10), box(0, 0, 5, 10)
    matches = match_objects([a, b], [p1, p2], 0.3)
    assert [(t, p) for t, p, _ in matches] == [(0, 1), (1, 0)]
    assert matches[1][2] == pytest.approx(40 / 130)


def test_count_error_and_empty_cases():
    r = object_rates({"tp": 70, "fp": 1, "fn": 3, "matched_iou_sum": 56.0, "count_true": 73, "count_pred": 71})
    assert r["count_error"] == -2
    assert r["count_error_rel"] == pytest.approx(-2 / 73, abs=1e-4)
    empty = object_rates(object_counts([], [], 0.5))
    assert empty["precision"] is None and empty["recall"] is None and empty["f1"] is None
    only_fp = object_rates(object_counts([], [box(0, 0, 1, 1)], 0.5))
    assert only_fp["precision"] == 0.0 and only_fp["recall"] is None and only_fp["f1"] == 0.0
    only_fn = object_rates(object_counts([box(0, 0, 1, 1)], [], 0.5))
    assert only_fn["precision"] is None and only_fn["recall"] == 0.0 and only_fn["f1"] == 0.0


def test_area_iou_of_unions():
    c = area_counts([box(0, 0, 10, 10)], [box(5, 0, 15, 10)])
    assert area_rates(c)["area_iou"] == pytest.approx(1 / 3, abs=1e-4)
    # two touching predictions covering the truth exactly: IoU 1
    c = area_counts([box(0, 0, 10, 10)], [box(0, 0, 5, 10), box(5, 0, 10, 10)])
    assert area_rates(c)["area_iou"] == pytest.approx(1.0)


def test_track_recall_and_precision_within_tolerance():
    truth = [LineString([(0, 0), (100, 0)])]  # 100 samples at x = 0.5 .. 99.5
    pred = [
        LineString([(0, 1.5), (50, 1.5)]),  # 50 samples, all within 2.5 m of the truth
        LineString([(60, 4), (100, 4)]),  # 40 samples, 4 m away: misses
    ]
    c = track_counts(truth, pred)
    # truth samples near a prediction: x <= 50 (50 of them) plus 50.5 and 51.5 (distance 1.56, 2.0)
    assert (c["truth_hits"], c["truth_samples"]) == (52, 100)
    assert (c["pred_hits"], c["pred_samples"]) == (50, 90)
    r = track_rates(c)
    assert r["recall"] == pytest.approx(0.52)
    assert r["precision"] == pytest.approx(50 / 90, abs=1e-4)
    assert (r["truth_lines"], r["pred_lines"], r["lines_per_true_line"]) == (1, 2, 2.0)
    assert r["doubled_share"] == 0.0  # the two lines are 10 m apart end to end
    missed = track_rates(track_counts(truth, []))
    assert missed["recall"] == 0.0 and missed["precision"] is None and missed["f1"] == 0.0


def test_track_drawn_twice_is_counted_once_per_copy_sample():
    truth = [LineString([(0, 0), (100, 0)])]
    pred = [
        LineString([(0, 0), (100, 0)]),  # 100 samples, 41 of them (x 59.5 .. 99.5) within 1.5 m of the next
        LineString([(60, 1), (100, 1)]),  # 40 samples, all within 1.5 m of the first: a second copy
        LineString([(0, 5), (50, 5)]),  # 50 samples, 5 m to the side: no copy
    ]
    c = track_counts(truth, pred)
    assert (c["pred_doubled"], c["pred_samples"]) == (81, 190)
    assert track_rates(c)["doubled_share"] == pytest.approx(81 / 190, abs=1e-4)
    assert track_rates(c)["precision"] == pytest.approx(140 / 190, abs=1e-4)  # the copy is precise


def test_counts_add_up_over_scenes():
    one = {"railcar": {"tp": 1, "fp": 0, "fn": 1, "matched_iou_sum": 0.9, "count_true": 2, "count_pred": 1}}
    two = {"railcar": {"tp": 3, "fp": 1, "fn": 0, "matched_iou_sum": 2.4, "count_true": 3, "count_pred": 4}}
    total = rates(merge_counts([one, two]))["railcar"]
    assert (total["tp"], total["fp"], total["fn"]) == (4, 1, 1)
    assert total["precision"] == pytest.approx(0.8) and total["recall"] == pytest.approx(0.8)


def _lonlat(geom, crs):
    t = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
    return shapely.transform(geom, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def test_scene_counts_from_wgs84_collections():
    crs = CRS.from_epsg(32652)
    x0, y0 = 640000.0, 4698000.0
    cars = [box(x0 + i * 15, y0, x0 + i * 15 + 14, y0 + 3) for i in range(3)]
    track = LineString([(x0 - 10, y0 + 1.5), (x0 + 60, y0 + 1.5)])

    def fc(items):
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": mapping(_lonlat(g, crs)), "properties": {"class": cls}}
            for cls, g in items]}

    truth = fc([("railcar", c) for c in cars] + [("track", track)])
    pred = fc([("railcar", c) for c in cars[:2]] + [("track", track)])
    assert utm_crs_for(130.6, 42.42).to_epsg() == 32652
    r = rates(scene_counts(truth, pred))
    assert (r["railcar"]["tp"], r["railcar"]["fn"], r["railcar"]["fp"]) == (2, 1, 0)
    assert r["railcar"]["mean_matched_iou"] == pytest.approx(1.0, abs=1e-3)
    assert r["track"]["recall"] == 1.0 and r["track"]["precision"] == 1.0
    assert r["track"]["truth_length_m"] == pytest.approx(70.0, abs=0.1)
    assert r["tarped_cargo"]["f1"] is None


def test_consist_couplings_and_exact_consists_by_hand():
    """Truth: a row of four coupled cars and a row of two. Found: every car but the last of the two,
    the four as two consists of two, and a car that matches nothing in the first consist. Scored on
    cars found at both ends: true couplings 1-2, 2-3, 3-4 (the pair's is not, its second car is
    missed); found 1-2 and 3-4 (the stray car's coupling is not scored)."""
    from models.consist_metrics import consist_counts, consist_rates

    crs = CRS.from_epsg(32652)
    x0, y0 = 640000.0, 4698000.0
    four = [box(x0 + i * 15, y0, x0 + i * 15 + 14, y0 + 3) for i in range(4)]
    two = [box(x0 + i * 15, y0 + 50, x0 + i * 15 + 14, y0 + 53) for i in range(2)]
    stray = box(x0 - 15, y0 + 200, x0 - 1, y0 + 203)

    def fc(items):
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": mapping(_lonlat(g, crs)), "properties": {"class": "railcar", **props}}
            for g, props in items]}

    truth = fc([(g, {}) for g in four + two])
    found = fc([(four[0], {"consist_id": "a", "consist_position": 1}), (four[1], {"consist_id": "a", "consist_position": 2}),
                (stray, {"consist_id": "a", "consist_position": 3}),
                (four[2], {"consist_id": "b", "consist_position": 1}), (four[3], {"consist_id": "b", "consist_position": 2}),
                (two[0], {"consist_id": "c", "consist_position": 1})])  # fmt: skip
    c = consist_counts(truth, found, crs)
    assert c == {"couplings_true": 3, "couplings_pred": 2, "couplings_agree": 2, "consists_true": 1, "consists_exact": 0}
    r = consist_rates(c)
    assert (r["coupling_precision"], r["coupling_recall"], r["consists_exact_share"]) == (1.0, 0.6667, 0.0)
    whole = fc([(g, {"consist_id": "a", "consist_position": k + 1}) for k, g in enumerate(four)])
    assert consist_counts(truth, whole, crs)["consists_exact"] == 1  # the row of four, all in one consist
