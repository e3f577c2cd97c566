"""Railcars into consists, and the track each car stands on.

Analysts follow one train from image to image by its cars' colour, length, order in the consist and
the track a car stands on (shared/USE_CASE.md: "a three-car set ... light blue, darker blue and
reddish-brown"). A consist here is a row of cars coupled nose to tail: two cars are coupled when
their facing ends are at most ``COUPLING_GAP_M`` apart, they point the same way (to within
``MAX_TURN_DEG``, enough for the tightest yard curves) and each stands on the other's axis (within
``MAX_OFFSET_M``). Each end couples to at most one other: the nearest such end, where that end's
nearest is this one too. A car stands on the track whose centre line passes within
``TRACK_REACH_M`` of its centre along the car's heading.

Everything is in grid pixels, on arrays: a large scene has about 100,000 cars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from kernels.linemerge import walk_chains
from kernels.row_threads import by_rows

# Coupled cars stand about 1 m apart (shared/USE_CASE.md), but a detected rectangle may come out
# short at an end, and its centre off the car's axis (a footprint that takes in some shadow). Chosen
# on the three validation sets (engine seeds 7000 / 7100 / 7200, 30 scenes, shipped weights run 17,
# truth consists by the exact footprints at 3 m, 1.5 m, 15 degrees), coupling precision / recall and
# share of true consists found exactly: gap 3 m, offset 1.5 m 0.999 / 0.906 / 0.66; offset 1.0 m
# 0.999 / 0.826 / 0.56 (gap 4 m); gap 3 m, offset 2.5 m 0.999 / 0.949 / 0.74; gap 4 m, offset 2.5 m
# 0.999 / 0.956 / 0.74; gap 5 m 0.998 / 0.962 / 0.77. Turns of 10 or 20 degrees change little.
# Neighbouring tracks are 4.5 m or more apart, so an offset of 2.5 m still keeps their cars apart.
COUPLING_GAP_M = 4.0
MAX_TURN_DEG = 15.0
MAX_OFFSET_M = 2.5


@dataclass(frozen=True)
class CouplingRules:
    """When two cars count as coupled (see the module's docstring)."""

    gap_m: float = COUPLING_GAP_M
    max_offset_m: float = MAX_OFFSET_M
    max_turn_deg: float = MAX_TURN_DEG


# A car's centre to its track's centre line: the line runs on under the cars (kernels.vectorise.
# through_cars), so along their middles; the next track is 4.5 m or more away.
TRACK_REACH_M = 2.0


@dataclass(frozen=True)
class Consists:
    """Per car: its consist (0..n-1, numbered in the order of each consist's first car), its place
    in the consist (1 = the end car nearer the grid's left edge, or its top edge for a consist
    running more up than across), and how many cars the consist has."""

    consist: np.ndarray
    position: np.ndarray
    cars: np.ndarray


def car_axes(corner: np.ndarray, along: np.ndarray, across: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rectangles given by a corner and their long and short sides -> centres (N, 2), unit long axes
    (N, 2) and half lengths (N,)."""
    length = np.hypot(*along.T)
    unit = along / np.maximum(length, 1e-9)[:, None]
    return corner + (along + across) / 2.0, unit, length / 2.0


def find_consists(centre: np.ndarray, axis: np.ndarray, half: np.ndarray, pixel_size_m: float,
                  rules: CouplingRules = CouplingRules()) -> Consists:
    """Consists of cars with centres ``centre``, unit long axes ``axis`` and half lengths ``half``."""
    n = len(centre)
    if not n:
        empty = np.zeros(0, dtype=np.int64)
        return Consists(empty, empty, empty)
    links = _couplings(centre, axis, half, pixel_size_m, rules)
    graph = coo_array((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    count, consist = connected_components(graph, directed=False)
    # Renumbered in the order of each consist's first car, so the numbering follows the caller's order.
    _, first = np.unique(consist, return_index=True)
    rank = np.empty(count, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(count)
    consist = rank[consist]
    start = _start_cars(centre, consist, count, np.bincount(links.ravel(), minlength=n))
    # Every consist in turn, each from its start car along its chain (a chain has no branches).
    order = walk_chains(n, links, start)
    cars = np.bincount(consist, minlength=count)
    in_order = consist[order]
    begins = np.r_[0, np.flatnonzero(in_order[1:] != in_order[:-1]) + 1]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - np.repeat(begins, np.diff(np.r_[begins, n])) + 1
    return Consists(consist, position, cars[consist])


def _start_cars(centre: np.ndarray, consist: np.ndarray, count: int, degree: np.ndarray) -> np.ndarray:
    """Each consist's first car: of its two end cars, the left one for a consist running more across
    than up the grid, else the top one (a lone car is its own end; a closed ring of cars, which no
    track holds, starts at its first car)."""
    start = np.full(count, -1, dtype=np.int64)
    ends = np.flatnonzero(degree < 2)
    ends = ends[np.argsort(consist[ends], kind="stable")]
    which, first, size = np.unique(consist[ends], return_index=True, return_counts=True)
    e0 = ends[first]
    e1 = np.where(size > 1, ends[np.minimum(first + 1, len(ends) - 1)], e0)
    span = np.abs(centre[e1] - centre[e0])
    dim = np.where(span[:, 0] >= span[:, 1], 0, 1)
    key0, key1 = centre[e0, dim], centre[e1, dim]
    start[which] = np.where(key1 < key0, e1, e0)
    ring = np.flatnonzero(start < 0)
    if ring.size:
        _, first_car = np.unique(consist, return_index=True)
        start[ring] = first_car[ring]
    return start


def _couplings(centre: np.ndarray, axis: np.ndarray, half: np.ndarray, pixel_size_m: float,
               rules: CouplingRules) -> np.ndarray:
    """Pairs of coupled cars as an (M, 2) array: an end couples to the nearest end that faces it
    under ``rules`` when that end's nearest is this one too."""
    gap = rules.gap_m / pixel_size_m
    # End 2i is car i's back (centre - axis * half), end 2i + 1 its front; ``out`` points away from the car.
    out = np.repeat(axis, 2, axis=0) * np.tile([-1.0, 1.0], len(centre))[:, None]
    ends = np.repeat(centre, 2, axis=0) + out * np.repeat(half, 2)[:, None]
    pairs = cKDTree(ends).query_pairs(gap, output_type="ndarray")
    a, b = pairs[:, 0], pairs[:, 1]
    i, j = a // 2, b // 2
    turn_ok = np.abs(np.einsum("kd,kd->k", axis[i], axis[j])) >= np.cos(np.radians(rules.max_turn_deg))
    offset = rules.max_offset_m / pixel_size_m
    # Each car lies beyond the other's end, on the other's axis: nose to tail, not side by side.
    facing = _ahead(centre[j] - centre[i], out[a], offset) & _ahead(centre[i] - centre[j], out[b], offset)
    keep = (i != j) & turn_ok & facing
    a, b = a[keep], b[keep]
    # Each end's nearest facing end, both ways round; a pair stands where each is the other's nearest.
    both = np.r_[a, b], np.r_[b, a]
    distance = np.hypot(*(ends[both[0]] - ends[both[1]]).T)
    order = np.lexsort((both[1], distance, both[0]))
    first = order[np.r_[True, both[0][order][1:] != both[0][order][:-1]]] if order.size else order
    nearest = np.full(len(ends), -1, dtype=np.int64)
    nearest[both[0][first]] = both[1][first]
    mutual = nearest[b] == a
    mutual &= nearest[a] == b
    return np.unique(np.sort(np.column_stack([a[mutual], b[mutual]]) // 2, axis=1), axis=0)


def _ahead(offset_vec: np.ndarray, direction: np.ndarray, max_side: float) -> np.ndarray:
    """Whether each vector points along ``direction`` (a unit vector) and strays at most
    ``max_side`` to its side."""
    forward = np.einsum("kd,kd->k", offset_vec, direction)
    side = np.abs(offset_vec[:, 0] * direction[:, 1] - offset_vec[:, 1] * direction[:, 0])
    return (forward > 0) & (side <= max_side)


def tracks_under(centre: np.ndarray, axis: np.ndarray, lines: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """For each car (centre, unit long axis), the index in ``lines`` (LineStrings, grid pixels) of
    the track it stands on: the nearest whose centre line passes within ``TRACK_REACH_M`` of the
    car's centre, running the car's way there (within ``MAX_TURN_DEG``); -1 where none does.
    Worked on the lines' straight segments: a long diagonal track's bounding box covers much of a
    scene, a segment's little more than the segment."""
    track = np.full(len(centre), -1, dtype=np.int64)
    if not len(centre) or not len(lines):
        return track
    _, coords, (offsets,) = shapely.to_ragged_array(lines, include_z=False)
    seg_line = np.repeat(np.arange(len(lines)), np.diff(offsets) - 1)
    starts = np.delete(np.arange(len(coords) - 1), offsets[1:-1] - 1)  # no segment from one line to the next
    a, b = coords[starts], coords[starts + 1]
    tree = shapely.STRtree(by_rows(shapely.linestrings, np.stack([a, b], axis=1)))
    # Each car's track depends on that car alone: slices of the cars are looked up at once.
    return by_rows(lambda c, ax: _nearest_track(c, ax, tree, a, b, seg_line, pixel_size_m), centre, axis)


def _nearest_track(centre: np.ndarray, axis: np.ndarray, tree: shapely.STRtree, a: np.ndarray, b: np.ndarray,
                   seg_line: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """``tracks_under`` for these cars, given the tree of the lines' segments (``a`` to ``b``, of
    line ``seg_line``)."""
    track = np.full(len(centre), -1, dtype=np.int64)
    car, seg = tree.query(shapely.points(centre), predicate="dwithin", distance=TRACK_REACH_M / pixel_size_m)
    if not car.size:
        return track
    direction = b[seg] - a[seg]
    length = np.hypot(*direction.T)
    cosine = np.abs(np.einsum("kd,kd->k", direction, axis[car])) / np.maximum(length, 1e-9)
    # the distance from the car's centre to the segment (its nearest point, ends included)
    t = np.clip(np.einsum("kd,kd->k", centre[car] - a[seg], direction) / np.maximum(length, 1e-9) ** 2, 0.0, 1.0)
    distance = np.hypot(*(a[seg] + direction * t[:, None] - centre[car]).T)
    ok = (length > 0) & (cosine >= np.cos(np.radians(MAX_TURN_DEG)))
    car, line, distance = car[ok], seg_line[seg[ok]], distance[ok]
    order = np.lexsort((line, distance, car))  # per car, the nearest line first (ties: the lower index)
    car, line = car[order], line[order]
    first = np.r_[True, car[1:] != car[:-1]]
    track[car[first]] = line[first]
    return track
