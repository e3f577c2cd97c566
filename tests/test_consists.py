"""Railcars into consists and onto tracks (kernels.consists): rows of cars with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from kernels.consists import car_axes, find_consists, tracks_under
from kernels.vectorise import box_sides

PX = 0.5  # metres per grid pixel


def car(cx: float, cy: float, heading_deg: float = 90.0, length_m: float = 14.0, width_m: float = 3.0):
    """A car's rectangle (grid pixels) centred at (cx, cy), its long axis ``heading_deg`` clockwise
    from grid-up (90: along the grid's x axis)."""
    rect = shapely.geometry.box(-length_m / PX / 2, -width_m / PX / 2, length_m / PX / 2, width_m / PX / 2)
    rect = shapely.affinity.rotate(rect, heading_deg - 90.0, origin=(0, 0))
    return shapely.affinity.translate(rect, cx, cy)


def row(x0: float, y0: float, n: int, heading_deg: float = 90.0, gap_m: float = 1.0, length_m: float = 14.0):
    """``n`` cars nose to tail from (x0, y0) along ``heading_deg``, ``gap_m`` apart."""
    step = (length_m + gap_m) / PX
    dx, dy = math.sin(math.radians(heading_deg)), -math.cos(math.radians(heading_deg))
    return [car(x0 + k * step * dx, y0 + k * step * dy, heading_deg, length_m) for k in range(n)]


def consists_of(rects):
    centre, axis, half = car_axes(*box_sides(np.array(rects, dtype=object)))
    return find_consists(centre, axis, half, PX)


def test_a_row_of_coupled_cars_is_one_consist_numbered_from_its_left_end():
    cars = row(100, 100, 5) + [car(100 + 4 * 30 + 30 + 20, 100)]  # a sixth car 10 m past the fifth
    found = consists_of(cars)
    assert found.consist.tolist() == [0, 0, 0, 0, 0, 1]
    assert found.position.tolist() == [1, 2, 3, 4, 5, 1]
    assert found.cars.tolist() == [5, 5, 5, 5, 5, 1]


def test_order_follows_the_cars_not_the_order_they_come_in():
    cars = row(100, 100, 4)
    shuffled = [cars[2], cars[0], cars[3], cars[1]]
    found = consists_of(shuffled)
    assert found.consist.tolist() == [0, 0, 0, 0]
    assert found.position.tolist() == [3, 1, 4, 2]


def test_a_consist_running_up_the_grid_is_numbered_from_its_top():
    cars = row(100, 400, 3, heading_deg=0.0)  # heading 0: each next car further up (smaller y)
    assert consists_of(cars).position.tolist() == [3, 2, 1]


def test_cars_side_by_side_on_neighbouring_tracks_are_not_coupled():
    cars = row(100, 100, 3) + row(100, 100 + 4.5 / PX, 3)  # 4.5 m apart, the closest tracks are
    found = consists_of(cars)
    assert found.consist.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_car_turned_off_the_row_or_too_far_is_not_coupled():
    cars = row(100, 100, 2)  # the second car's front end is at grid (144, 100)
    turn = math.radians(40.0)
    reach = 2 + 14  # 1 m gap, then half a car, along the turned car's axis
    turned = car(144 + reach * math.sin(math.pi / 2 + turn), 100 - reach * math.cos(math.pi / 2 + turn), 130.0)
    far = car(100 - 28 - 10, 100)  # 5 m before the row's first car: over COUPLING_GAP_M
    assert consists_of([*cars, turned, far]).cars.tolist() == [2, 2, 1, 1]
    assert consists_of([*cars, car(144 + reach, 100)]).cars.tolist() == [3, 3, 3]  # not turned: coupled


def test_cars_round_a_curve_stay_one_consist():
    radius = 150.0 / PX
    cars = []
    for k in range(8):  # 15 m of arc per car: 14 m cars, 1 m gaps
        angle = k * (15.0 / PX) / radius
        heading = 90.0 + math.degrees(angle)
        cars.append(car(500 + radius * math.sin(angle), 500 + radius * (1 - math.cos(angle)), heading))
    found = consists_of(cars)
    assert found.cars.tolist() == [8] * 8
    assert found.position.tolist() == list(range(1, 9))


def test_each_car_stands_on_the_track_along_its_middle():
    cars = row(100, 100, 3) + row(100, 100 + 4.5 / PX, 2)
    centre, axis, _ = car_axes(*box_sides(np.array(cars, dtype=object)))
    lines = np.array([
        LineString([(0, 100 + 4.5 / PX + 0.8), (400, 100 + 4.5 / PX + 0.8)]),  # under the second row, 0.4 m off
        LineString([(0, 100.5), (400, 100.5)]),  # under the first
        LineString([(130, 0), (130, 300)]),  # across both rows: not the way the cars run
    ], dtype=object)
    assert tracks_under(centre, axis, lines, PX).tolist() == [1, 1, 1, 0, 0]


def test_a_car_with_no_track_near_it_has_none():
    cars = row(100, 100, 2)
    centre, axis, _ = car_axes(*box_sides(np.array(cars, dtype=object)))
    beside = np.array([LineString([(0, 100 + 3.0 / PX), (400, 100 + 3.0 / PX)])], dtype=object)  # 3 m off
    assert tracks_under(centre, axis, beside, PX).tolist() == [-1, -1]
    assert tracks_under(centre, axis, np.zeros(0, dtype=object), PX).tolist() == [-1, -1]


def test_no_cars():
    found = find_consists(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), PX)
    assert len(found.consist) == len(found.position) == len(found.cars) == 0


@pytest.mark.parametrize("heading", [30.0, 135.0])
def test_car_axes_give_centre_direction_and_half_length(heading):
    rect = car(200, 300, heading, length_m=15.0)
    centre, axis, half = car_axes(*box_sides(np.array([rect], dtype=object)))
    assert centre[0] == pytest.approx([200, 300])
    assert half[0] == pytest.approx(15.0 / PX / 2)
    want = np.array([math.sin(math.radians(heading)), -math.cos(math.radians(heading))])
    assert abs(float(axis[0] @ want)) == pytest.approx(1.0)
