"""Railcar rectangles fitted again to their tracks and trains (kernels.car_fit), on hand-made cars."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from kernels.car_fit import (
    RAILCAR_HEIGHT_M,
    along_consists,
    car_rectangles,
    cut_to_consist_length,
    fit_railcars,
    lean_widening,
    lengthen_short_ends,
    onto_tracks,
    view_widening,
)
from kernels.vectorise import oriented_box_attributes

PX = 0.5  # metres per grid pixel


def _axis(deg: float) -> np.ndarray:
    return np.array([[np.cos(np.radians(deg)), np.sin(np.radians(deg))]])


def test_a_car_beside_its_track_is_moved_across_onto_it_and_turned_to_it():
    lines = np.array([LineString([(0, 0), (200, 0)])], dtype=object)
    centre = np.array([[100.0, 1.5], [50.0, 1.5]])
    axis = np.vstack([_axis(4.0), -_axis(2.0)])  # the second points the other way along the track
    new_centre, new_axis = onto_tracks(centre, axis, np.array([0, 0]), lines, PX)
    # Only the offset across the track goes: the first car's along-track place moves with its turn.
    assert new_centre[:, 1] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert new_centre[:, 0] == pytest.approx([100.0, 50.0], abs=1e-9)
    assert new_axis == pytest.approx(np.array([[1.0, 0.0], [-1.0, 0.0]]), abs=1e-9)


def test_a_car_with_no_track_stays_as_it_was():
    lines = np.array([LineString([(0, 0), (200, 0)])], dtype=object)
    centre, axis = np.array([[100.0, 1.5]]), _axis(4.0)
    new_centre, new_axis = onto_tracks(centre, axis, np.array([-1]), lines, PX)
    assert np.array_equal(new_centre, centre) and np.array_equal(new_axis, axis)


def _train_on_a_circle(radius: float, cars: int, pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres and unit tangents of cars standing ``pitch`` apart on a circle round the origin."""
    angle = np.arange(cars) * pitch / radius
    centre = radius * np.column_stack([np.cos(angle), np.sin(angle)])
    return centre, np.column_stack([-np.sin(angle), np.cos(angle)])


def test_a_car_off_the_curve_of_its_train_is_moved_back_and_turned_along_it():
    centre, tangent = _train_on_a_circle(radius=400.0, cars=7, pitch=30.0)
    off = centre.copy()
    off[3] *= (400.0 + 2.0) / 400.0  # 1 m outward of the curve at 0.5 m pixels
    axis = tangent.copy()
    axis[3] = tangent[3] + 0.05 * centre[3] / 400.0  # and turned about 3 degrees
    axis[3] /= np.hypot(*axis[3])
    new_centre, new_axis = along_consists(off, axis, np.zeros(7, dtype=np.int64), np.arange(1, 8))
    before = abs(np.hypot(*off[3]) - 400.0)
    after = abs(np.hypot(*new_centre[3]) - 400.0)
    assert after < 0.4 * before  # the car's own centre is one of the seven the curve is fitted to
    turned = np.degrees(np.arccos(np.clip(abs(new_axis[3] @ tangent[3]), -1.0, 1.0)))
    assert turned < 1.0  # from about 2.9 degrees


def test_cars_on_a_straight_track_stay_put_and_short_trains_are_left_alone():
    centre = np.column_stack([np.arange(5) * 30.0, np.full(5, 10.0)])
    axis = np.repeat(_axis(0.0), 5, axis=0)
    consist = np.array([0, 0, 0, 1, 1])  # a three-car train and a two-car one
    bent = centre.copy()
    bent[4, 1] += 2.0
    new_centre, new_axis = along_consists(bent, axis, consist, np.array([1, 2, 3, 1, 2]))
    assert new_centre[:3] == pytest.approx(centre[:3], abs=1e-6)
    assert new_axis[:3] == pytest.approx(axis[:3], abs=1e-9)
    assert np.array_equal(new_centre[3:], bent[3:])  # two centres say nothing about a curve


def _row(lengths_m: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cars nose to tail along x, 1 m apart: centres, axes and half lengths in grid pixels."""
    half = np.array(lengths_m) / PX / 2.0
    ends = np.cumsum(2.0 * half + 1.0 / PX)
    centre = np.column_stack([ends - half, np.zeros(len(half))])
    return centre, np.repeat(_axis(0.0), len(half), axis=0), half


def test_a_car_twice_as_long_as_the_rest_of_its_train_is_cut_in_two_equal_cars():
    centre, axis, half = _row([14.0, 14.0, 28.0, 14.0])
    source, new_centre, new_axis, new_half = cut_to_consist_length(
        centre, axis, half, np.zeros(4, dtype=np.int64), np.full(4, 4), PX)
    assert source.tolist() == [0, 1, 2, 2, 3]
    assert (2 * new_half * PX).tolist() == pytest.approx([14.0, 14.0, 14.0, 14.0, 14.0])
    assert new_centre[2:4, 0] == pytest.approx(centre[2, 0] + np.array([-1, 1]) * 14.0 / PX / 2)
    assert np.array_equal(new_axis, axis[source])


@pytest.mark.parametrize("lengths_m, cars", [
    ([10.0, 10.0, 17.0, 10.0], 4),  # 1.7 times the median: a longer car, not two
    ([9.0, 9.0, 18.0, 9.0], 4),  # two 9 m pieces would be shorter than real cars
    ([14.0, 28.0], 2),  # a two-car train says too little about its cars' length
])
def test_cars_that_may_be_one_long_car_are_not_cut(lengths_m, cars):
    centre, axis, half = _row(lengths_m)
    n = len(lengths_m)
    source, _, _, new_half = cut_to_consist_length(centre, axis, half, np.zeros(n, dtype=np.int64),
                                                   np.full(n, cars), PX)
    assert source.tolist() == list(range(n)) and np.array_equal(new_half, half)


def test_a_trains_short_end_cars_are_lengthened_away_from_it_to_its_median_length():
    centre, axis, half = _row([8.0, 14.0, 14.0, 15.0, 9.0])
    axis[0] *= -1.0  # a car's axis may point either way along the train
    new_centre, new_half = lengthen_short_ends(centre, axis, half, PX)
    assert (2 * new_half * PX).tolist() == pytest.approx([14.0, 14.0, 14.0, 15.0, 14.0])
    # Each keeps its inner end, beside the next car, and grows at its outer one.
    assert new_centre[0, 0] + new_half[0] == pytest.approx(centre[0, 0] + half[0])
    assert new_centre[4, 0] - new_half[4] == pytest.approx(centre[4, 0] - half[4])
    assert np.array_equal(new_centre[1:4], centre[1:4]) and new_centre[[0, 4], 1] == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("lengths_m", [
    [12.6, 14.0, 14.0],  # 0.9 of the median: a shorter car
    [14.0, 13.0],  # within 0.85 of a two-car train's median
    [8.0],  # a lone car has no train to say how long its cars are
])
def test_end_cars_near_their_trains_length_and_lone_cars_are_left_as_they_are(lengths_m):
    centre, axis, half = _row(lengths_m)
    new_centre, new_half = lengthen_short_ends(centre, axis, half, PX)
    assert np.array_equal(new_centre, centre) and np.array_equal(new_half, half)


def test_rectangles_are_held_to_a_real_cars_width():
    centre = np.zeros((3, 2))
    axis = np.repeat(_axis(30.0), 3, axis=0)
    rects = car_rectangles(centre, axis, np.full(3, 28.0), np.array([3.0, 5.6, 8.0]), PX)
    attrs = oriented_box_attributes(rects, PX)
    assert attrs["width_m"].tolist() == [2.4, 2.8, 3.2]
    assert attrs["length_m"].tolist() == [14.0, 14.0, 14.0]
    assert attrs["heading_deg"].tolist() == pytest.approx([120.0] * 3)


def test_fitted_railcars_stand_on_their_track_in_their_trains_length():
    """A train of four 14 m cars, one left whole with its neighbour, fitted 1 m beside its track,
    slightly turned and 4 m wide: it comes out as five cars on the track, 3.2 m wide."""
    lines = np.array([LineString([(-50, 0), (400, 0)])], dtype=object)
    centre, axis, half = _row([14.0, 14.0, 29.0, 14.0])
    turned = np.repeat(_axis(2.0), 4, axis=0)
    across = np.column_stack([-turned[:, 1], turned[:, 0]]) * 8.0  # 4 m at 0.5 m pixels
    corner = centre + [0.0, 2.0] - (turned * half[:, None] + across / 2)
    rects = shapely.polygons(np.stack([corner, corner + 2 * turned * half[:, None],
                                       corner + 2 * turned * half[:, None] + across, corner + across, corner], axis=1))
    cars = fit_railcars(rects, lines, PX)
    assert cars.source.tolist() == [0, 1, 2, 2, 3] and cars.track.tolist() == [0] * 5
    attrs = oriented_box_attributes(cars.rects, PX)
    assert attrs["width_m"].tolist() == [3.2] * 5
    assert attrs["heading_deg"].tolist() == pytest.approx([90.0] * 5)
    assert shapely.get_y(shapely.centroid(cars.rects)) == pytest.approx([0.0] * 5, abs=1e-6)


def _train_of_width(widths_m: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A train of 14 m cars of these fitted widths standing on one track along x (grid pixels)."""
    centre, axis, half = _row([14.0] * len(widths_m))
    across = np.column_stack([np.zeros(len(half)), np.array(widths_m) / PX])
    along = axis * (2.0 * half)[:, None]
    corner = centre - (along + across) / 2.0
    rects = shapely.polygons(np.stack([corner, corner + along, corner + along + across, corner + across, corner], axis=1))
    return rects, np.array([LineString([(-50, 0), (2000, 0)])], dtype=object)


def test_a_scene_seen_off_nadir_keeps_its_cars_as_wide_as_they_show():
    """Twelve cars that all show 4.5 m wide (a roof leaned 1.7 m across): the bounds move up by
    1.7 m, so each keeps what shows of it. Twelve cars of a real car's width with one 4.5 m wide
    among them: that one took in shadow or spill and is held to 3.2 m as before."""
    rects, lines = _train_of_width([4.5] * 12)
    assert lean_widening(np.full(12, 4.5 / PX), PX) * PX == pytest.approx(4.5 - 2.8)
    widths = oriented_box_attributes(fit_railcars(rects, lines, PX).rects, PX)["width_m"]
    assert widths.tolist() == pytest.approx([4.5] * 12)

    rects, lines = _train_of_width([2.9] * 11 + [4.5])
    widths = oriented_box_attributes(fit_railcars(rects, lines, PX).rects, PX)["width_m"]
    assert widths.tolist() == pytest.approx([2.9] * 11 + [3.2])


def test_too_few_cars_say_nothing_of_the_view():
    assert lean_widening(np.full(9, 4.5 / PX), PX) == 0.0
    assert lean_widening(np.full(10, 4.5 / PX), PX) > 0.0
    assert lean_widening(np.full(40, 3.2 / PX), PX) == 0.0  # a real car's widest: nothing leans


def test_rectangles_widened_by_a_lean_keep_their_centre_and_length():
    centre = np.zeros((3, 2))
    axis = np.repeat(_axis(30.0), 3, axis=0)
    rects = car_rectangles(centre, axis, np.full(3, 28.0), np.array([3.0, 5.6, 12.0]), PX, widen=2.0)
    attrs = oriented_box_attributes(rects, PX)
    assert attrs["width_m"].tolist() == [3.4, 3.4, 4.2]
    assert attrs["length_m"].tolist() == [14.0, 14.0, 14.0]
    assert shapely.get_x(shapely.centroid(rects)) == pytest.approx([0.0] * 3, abs=1e-9)


def test_a_known_view_widens_each_car_by_its_roofs_lean_across_it():
    """Seen from the south at 30 degrees, a 4 m car's roof shows 2.3 m north of its foot: cars along
    x come out that much wider than their fitted width, held to a real car's, cars along y (the lean
    runs along them) no wider. Twelve cars that show 4.5 m wide from a view known to be straight
    down took in shadow, whatever their median says."""
    up = np.array([0.0, -np.tan(np.radians(30.0)) / PX])  # grid pixels a point 1 m up moves: north
    lean = RAILCAR_HEIGHT_M * np.tan(np.radians(30.0))
    rects, lines = _train_of_width([2.9, 2.9, 4.5])
    widths = oriented_box_attributes(fit_railcars(rects, lines, PX, up).rects, PX)["width_m"]
    assert widths.tolist() == pytest.approx([2.9 + lean, 2.9 + lean, 3.2 + lean], abs=0.01)
    axis = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert view_widening(axis, up) * PX == pytest.approx([lean, 0.0])

    rects, lines = _train_of_width([4.5] * 12)
    nadir = oriented_box_attributes(fit_railcars(rects, lines, PX, np.zeros(2)).rects, PX)["width_m"]
    assert nadir.tolist() == pytest.approx([3.2] * 12)
