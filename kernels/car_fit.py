"""Railcar rectangles held to what a real car is: on its track, in line with its train, as wide
as a real car, and, in a train, about as long as its other cars.

A rectangle fitted to one car's footprint pixels carries that footprint's errors: a pixel or two of
shadow on one side shifts it across the track and turns it, and the IoU of a 2.8 m wide car falls
fast with either. But a car stands on a track, coupled to the cars of its train:

- the track line under a row of cars is drawn through the middles of all their footprints
  (``kernels.vectorise.through_cars``), so a car is moved across onto it and turned to its
  direction there (``onto_tracks``);
- the centres of a train's cars trace its track over tens of metres, so each car is then moved onto,
  and turned to, the curve through its own and its neighbours' centres (``along_consists``);
- its width is held to a real car's (``car_rectangles``), and, in a scene seen off nadir, widened by
  the wall it shows beside its roof: by its roof's lean across it where the scene's view is known
  (``view_widening``), else by what its cars' median width says (``lean_widening``);
- a car about twice as long as the other cars of its train is two cars the model did not part
  (``cut_to_consist_length``);
- a train's end car well short of its other cars is a car whose outer part the model saw faintly,
  and is lengthened outwards (``lengthen_short_ends``).

Each car keeps its own place along the track. Chosen on three validation sets (engine seeds 7000 /
7100 / 7200, 30 scenes; run 17 in bf16), railcar F1 pooled, and per set:

| | pooled | per set |
|---|---|---|
| rectangles as fitted | 0.778 | 0.745 / 0.799 / 0.770 |
| widths held to 2.4-3.2 m (counterfactual) | | 0.756 / 0.804 / 0.776 |
| and onto tracks | 0.792 | 0.764 / 0.809 / 0.789 |
| and along consists | 0.799 | 0.776 / 0.817 / 0.790 |
| and long cars cut | 0.806 | 0.787 / 0.825 / 0.791 |
| and short end cars lengthened (a) | 0.820 | 0.810 / 0.835 / 0.805 |

(a) Session 40, engine 1.4.0's scenes, with the weights shipped since session 36 (the mean of runs
17 and 29), which score 0.810 (0.801 / 0.824 / 0.794) without it.

The widening off nadir was chosen in session 44 on the same seeds rendered by engine 1.7.0 (the
weights shipped since session 36, fp32): pooled 0.7310 -> 0.7372, its scenes 15-30 degrees off
nadir 0.611 -> 0.627, the rest unchanged (the same from a median of 3.0 m up as from 3.2 m).
The widening from a known view was chosen in session 45 on the same scenes (bf16; 0.7360 with the
median's widening): the fitted width held to a real car's, and the roof's lean across the car added
to it, at a car height of 3 / 4 / 4.5 m, 0.7502 / **0.7513** / 0.7506; the bounds moved by that lean
instead, as the median's widening does (a car fitted at 2.9 m then comes out 2.4 m and the lean),
0.7486 at 4 m; and with those bounds, centres moved towards the sensor by a quarter or half of the
lean, 0.7490 / 0.7391.

Track directions read over 2, 3, 5 or 8 m either side gave 0.7911 / 0.7918 / 0.7914 / 0.7903; two,
three or five neighbours either side 0.7987 / 0.7991 / 0.7995; cutting from 1.8 or 2.0 times the
median 0.8054 / 0.8033. Everything is in grid pixels, on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from kernels.consists import car_axes, find_consists, tracks_under
from kernels.row_threads import by_rows
from kernels.vectorise import box_sides

# Real railcars are 2.4-3.2 m wide (5th-95th percentile of 503 hand-drawn cars, shared/USE_CASE.md),
# 2.8 m in the median.
# A fitted rectangle outside that takes in shadow or spill, or lost an edge row of pixels.
RAILCAR_WIDTH_M = (2.4, 3.2)
RAILCAR_MEDIAN_WIDTH_M = 2.8
# Seen off nadir, a car shows its roof and the wall facing the sensor: what shows of it (what the
# engine labels, since 1.7.0) is wider than the car by its roof's lean across it, up to 2.3 m for a
# 4 m car 30 degrees off nadir. One view leans every car of a scene alike, so where the median
# fitted width of a scene's cars (MIN_CARS_FOR_LEAN or more) exceeds LEANED_FROM_M, the width
# bounds move up by what it exceeds a real car's median by (``lean_widening``).
LEANED_FROM_M = 3.2
MIN_CARS_FOR_LEAN = 10
# Where the view is known (``view_widening``), a car's roof leans by its height times the tangent of
# the view's angle from straight down; a box car or a loaded hopper stands about 4 m above the rail.
RAILCAR_HEIGHT_M = 4.0
# A track's direction at a car is read between the points this far either side of the car's centre
# on the line: about a short car's half length.
TRACK_DIRECTION_M = 3.0
# A car's place across its track and its heading come from its own centre and those of up to this
# many coupled cars either side of it (``along_consists``).
CONSIST_NEIGHBOURS = 3
# A car at least CUT_FROM_MEDIAN times the median length of its consist (of MIN_CONSIST_CARS or more)
# is coupled cars left whole (``cut_to_consist_length``).
CUT_FROM_MEDIAN = 1.8
# ... and cut only into pieces no shorter than the shortest real cars (9.7 m, the 5th percentile of
# shared/USE_CASE.md): a consist of short cars holds one somewhat longer car, not two shorter ones.
MIN_PIECE_M = 9.7
MIN_CONSIST_CARS = 3
# A consist's end car under SHORT_END_SHARE of its consist's median length is lengthened outwards to
# that median (``lengthen_short_ends``). Of the cars the shipped weights find (validation, 30 scenes,
# bf16), 25 % of consists' end cars matched no true car against 8 % of their inner cars; those with
# a true car under them at IoU 0.3-0.5 were a median 0.71 of its length. Overlays show why: the
# outer part of a dark car on dark ballast comes out faint, and where a car's footprint fades, the
# consist ends there; an inner car's neighbours hold both its ends. Pooled railcar F1 on the
# validation sets: 0.8100 as before; ends under 0.75 / 0.85 / 0.95 of the median 0.8198 / 0.8207 /
# 0.8207 (consists of two cars or more; of three or more 0.8193 at 0.85); lengthened to 0.9 / 1.0 /
# 1.05 times it 0.8204 / 0.8207 / 0.8201; not lengthened where the longer car would overlap another
# car by over 5 % of its area 0.8180 (235 of 825 held back). Those trials moved the end along the
# line from its neighbour's centre to its own; along its own axis, as here, 0.8203. The count does
# not change.
SHORT_END_SHARE = 0.85


@dataclass(frozen=True)
class FittedCars:
    """Railcar rectangles fitted again (``fit_railcars``): for each, the index of the track it stands
    on (-1: none) and of the rectangle it came from (a cut car gives two or more)."""

    rects: np.ndarray
    track: np.ndarray
    source: np.ndarray


def fit_railcars(rects: np.ndarray, lines: np.ndarray, pixel_size_m: float,
                 lean: np.ndarray | None = None) -> FittedCars:
    """Railcar rectangles (grid pixels) on track lines ``lines`` fitted again, as the module says.
    ``lean``, where the scene's view is known: the grid pixels (columns, rows) by which a point 1 m
    up shows beyond its foot (``service.view_geometry``)."""
    corner, along, across = box_sides(rects)
    centre, axis, half = car_axes(corner, along, across)
    track = tracks_under(centre, axis, lines, pixel_size_m)
    centre, axis = by_rows(lambda c, a, t: onto_tracks(c, a, t, lines, pixel_size_m), centre, axis, track)
    found = find_consists(centre, axis, half, pixel_size_m)
    centre, axis = along_consists(centre, axis, found.consist, found.position)
    source, centre, axis, half = cut_to_consist_length(centre, axis, half, found.consist, found.cars, pixel_size_m)
    centre, half = lengthen_short_ends(centre, axis, half, pixel_size_m)
    width = np.hypot(*across.T)
    if lean is None:
        widen: float | np.ndarray = lean_widening(width, pixel_size_m)
        width = width[source]
    else:
        # The shipped weights paint little of a car's wall, so what the view shows of it is added.
        widen = view_widening(axis, lean)
        width = width[source] + widen
    return FittedCars(car_rectangles(centre, axis, 2.0 * half, width, pixel_size_m, widen),
                      track[source], source)


def lean_widening(width: np.ndarray, pixel_size_m: float) -> float:
    """How much wider than a real car (pixels) what shows of a car of this scene is, from the fitted
    widths (pixels) of all its cars: 0 unless their median says the scene is seen off nadir."""
    if len(width) < MIN_CARS_FOR_LEAN:
        return 0.0
    median_m = float(np.median(width)) * pixel_size_m
    return (median_m - RAILCAR_MEDIAN_WIDTH_M) / pixel_size_m if median_m > LEANED_FROM_M else 0.0


def view_widening(axis: np.ndarray, lean: np.ndarray) -> np.ndarray:
    """From a known view (``lean``: grid pixels a point 1 m up shows moved by), how much wider than
    the car each car (unit long axis) shows (pixels): its roof's lean across it, at a real car's
    height."""
    normal = np.column_stack([-axis[:, 1], axis[:, 0]])
    return np.abs(normal @ np.asarray(lean, dtype=np.float64)) * RAILCAR_HEIGHT_M


def onto_tracks(centre: np.ndarray, axis: np.ndarray, track: np.ndarray, lines: np.ndarray,
                pixel_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Each car (centre, unit long axis) with a track (``track`` >= 0, an index into ``lines``)
    moved across onto that line and turned to the line's direction there (the axis keeps its
    sense); the others as they were. Returns new centres and axes."""
    centre, axis = centre.astype(np.float64, copy=True), axis.astype(np.float64, copy=True)
    on = np.flatnonzero(track >= 0)
    if not on.size:
        return centre, axis
    line = lines[track[on]]
    at = shapely.line_locate_point(line, shapely.points(centre[on]))
    reach = TRACK_DIRECTION_M / pixel_size_m
    ahead = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(at + reach, shapely.length(line))))
    behind = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(at - reach, 0.0)))
    direction = ahead - behind
    norm = np.hypot(*direction.T)
    ok = norm > 1e-9
    on, direction, at, line = on[ok], direction[ok] / norm[ok, None], at[ok], line[ok]
    direction *= np.where(np.einsum("kd,kd->k", direction, axis[on]) < 0, -1.0, 1.0)[:, None]
    foot = shapely.get_coordinates(shapely.line_interpolate_point(line, at))
    # The car keeps its place along the track: only the part of its offset across the line goes.
    along = np.einsum("kd,kd->k", centre[on] - foot, direction)
    centre[on] = foot + direction * along[:, None]
    axis[on] = direction
    return centre, axis


def car_rectangles(centre: np.ndarray, axis: np.ndarray, length: np.ndarray, width: np.ndarray,
                   pixel_size_m: float, widen: float | np.ndarray = 0.0) -> np.ndarray:
    """Rotated rectangles (shapely Polygons) of the given centres, unit long axes and lengths, their
    widths held within ``RAILCAR_WIDTH_M``, moved up by ``widen`` pixels, one for all or one a car
    (``lean_widening``, ``view_widening``)."""
    lo, hi = (w / pixel_size_m + widen for w in RAILCAR_WIDTH_M)
    across = np.column_stack([-axis[:, 1], axis[:, 0]]) * np.clip(width, lo, hi)[:, None]
    along = axis * length[:, None]
    corner = centre - (along + across) / 2.0
    ring = np.stack([corner, corner + along, corner + along + across, corner + across, corner], axis=1)
    return shapely.polygons(ring)


def along_consists(centre: np.ndarray, axis: np.ndarray, consist: np.ndarray, position: np.ndarray,
                   neighbours: int = CONSIST_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Each car of a consist of three or more moved across onto, and turned to, the curve through
    its own centre and those of up to ``neighbours`` cars either side of it in the consist: a
    least-squares parabola across the car's own axis (a straight line with only three centres). The
    coupled cars of a train stand on one track, so their centres trace it better than one car's
    rectangle, or a track line read over a few metres, gives its direction."""
    centre, axis = centre.astype(np.float64, copy=True), axis.astype(np.float64, copy=True)
    n = len(centre)
    if n < 3:
        return centre, axis
    order = np.lexsort((position, consist))  # consists in turn, each car by car
    offsets = np.arange(-neighbours, neighbours + 1)
    slot = np.arange(n)[:, None] + offsets[None, :]
    inside = (slot >= 0) & (slot < n)
    slot = np.clip(slot, 0, n - 1)
    same = inside & (consist[order][slot] == consist[order][:, None])
    cars = same.sum(axis=1)
    fit = cars >= 3
    mine = order[fit]
    pts = centre[order[slot[fit]]] - centre[mine][:, None, :]
    u = axis[mine]
    v = np.column_stack([-u[:, 1], u[:, 0]])
    s = np.einsum("kjd,kd->kj", pts, u)
    t = np.einsum("kjd,kd->kj", pts, v)
    w = same[fit].astype(np.float64)
    # Weighted normal equations of t = a + b s + c s^2; with three centres c is held at zero.
    quad = (cars[fit] >= 4).astype(np.float64)
    basis = np.stack([np.ones_like(s), s, s * s * quad[:, None]], axis=2)
    gram = np.einsum("kj,kjp,kjq->kpq", w, basis, basis)
    gram[:, 2, 2] += 1.0 - quad  # keeps a three-centre system solvable, with c = 0
    gram += np.eye(3) * 1e-9  # and one whose centres line up across the axis
    rhs = np.einsum("kj,kjp,kj->kp", w, basis, t)
    a, b, _ = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0].T
    centre[mine] += v * a[:, None]
    direction = u + v * b[:, None]
    axis[mine] = direction / np.hypot(*direction.T)[:, None]
    return centre, axis


def cut_to_consist_length(centre: np.ndarray, axis: np.ndarray, half: np.ndarray, consist: np.ndarray,
                          cars: np.ndarray, pixel_size_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cars of a consist of ``MIN_CONSIST_CARS`` or more that are at least ``CUT_FROM_MEDIAN`` times
    the consist's median length, cut across their length into as many equal cars as that median
    goes into them (none shorter than ``MIN_PIECE_M``). The model leaves two coupled cars whole where
    it does not see their gap; a train's other cars say how long one of its cars is, where the fixed
    ``SPLIT_FROM_M`` of ``kernels.vectorise`` must allow for the longest car anywhere. Returns, for
    each car out, the index of the car it came from, and its centre, axis and half length."""
    n = len(centre)
    length = 2.0 * half
    median = consist_medians(length, consist)
    count = np.rint(length / np.where(median > 0, median, np.inf))
    long = ((cars >= MIN_CONSIST_CARS) & (count >= 2) & (length >= CUT_FROM_MEDIAN * median)
            & (length >= count * MIN_PIECE_M / pixel_size_m))
    pieces = np.where(long, count, 1).astype(np.int64)
    source = np.repeat(np.arange(n), pieces)
    # Piece k of p: its centre lies (k + 1/2) / p of the way along the car from its back end.
    k = np.arange(len(source)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    p = pieces[source]
    shift = (2.0 * k + 1.0 - p) / p * half[source]
    return source, centre[source] + axis[source] * shift[:, None], axis[source], half[source] / p


def consist_medians(length: np.ndarray, consist: np.ndarray) -> np.ndarray:
    """For each car, the median ``length`` of the cars of its consist."""
    n = len(length)
    median = np.zeros(n)
    if n:
        order = np.lexsort((length, consist))
        first = np.r_[0, np.flatnonzero(np.diff(consist[order])) + 1]
        size = np.diff(np.r_[first, n])
        mid = (length[order][first + (size - 1) // 2] + length[order][first + size // 2]) / 2.0
        median[order] = np.repeat(mid, size)
    return median


def lengthen_short_ends(centre: np.ndarray, axis: np.ndarray, half: np.ndarray,
                        pixel_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The first and last cars of each consist of two or more cars (``find_consists`` on these cars)
    that are under ``SHORT_END_SHARE`` of their consist's median length, lengthened to that median
    away from the consist: the inner end, where the next car stands, stays. Returns new centres and
    half lengths; axes do not change."""
    centre, half = centre.astype(np.float64, copy=True), half.astype(np.float64, copy=True)
    if not len(centre):
        return centre, half
    found = find_consists(centre, axis, half, pixel_size_m)
    median = consist_medians(2.0 * half, found.consist)
    place, cars = found.position, found.cars
    ends = np.flatnonzero((cars >= 2) & ((place == 1) | (place == cars)) & (2.0 * half < SHORT_END_SHARE * median))
    # Each end's neighbour in its consist: consist c's car at place p is car_at[first[c] + p - 1].
    car_at = np.lexsort((place, found.consist))
    sizes = np.bincount(found.consist)
    first = np.cumsum(sizes) - sizes
    inner = car_at[first[found.consist[ends]] + np.where(place[ends] == 1, 2, cars[ends] - 1) - 1]
    outward = axis[ends] * np.where(np.einsum("kd,kd->k", centre[ends] - centre[inner], axis[ends]) < 0,
                                    -1.0, 1.0)[:, None]
    inner_end = centre[ends] - outward * half[ends, None]
    half[ends] = median[ends] / 2.0
    centre[ends] = inner_end + outward * half[ends, None]
    return centre, half
