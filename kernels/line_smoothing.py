"""Smoothing track centre lines: a moving average along each line, its end points held.

A centre line traced on the model's 0.5 m grid zigzags by a pixel or so about the track's true
centre, which a track does not do. Each line is first given a vertex at least every ``step`` (so
the average runs over length, not over however the vertices happen to lie), then each vertex is
replaced by the mean of the vertices within ``half_window`` of it along the line, in equal numbers
on both sides. The window shrinks towards the ends, so an end does not move: ends are where lines
meet at junctions. Runs on all lines at once (ragged arrays).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import GeometryType

from kernels.row_threads import by_rows


def smooth_lines(lines: np.ndarray, *, step: float, half_window: float, simplify: float) -> np.ndarray:
    """``lines`` (an array of LineStrings, in pixels) smoothed; vertices the average left within
    ``simplify`` of a straight are dropped again (Douglas-Peucker), so the output stays small."""
    lines = np.asarray(lines, dtype=object)
    out = lines.copy()
    moving = shapely.length(lines) > 0  # GEOS cannot segmentize a line of one repeated point
    if moving.any():
        out[moving] = by_rows(lambda part: _smoothed(part, step, half_window, simplify), lines[moving])
    return out


def _smoothed(lines: np.ndarray, step: float, half_window: float, simplify: float) -> np.ndarray:
    _, coords, (offsets,) = shapely.to_ragged_array(shapely.segmentize(lines, step), include_z=False)
    sizes = np.diff(offsets)
    line = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(len(coords)) - offsets[line]
    k = max(int(round(half_window / step)), 0)
    half = np.minimum(k, np.minimum(position, sizes[line] - 1 - position))
    # Summed neighbour by neighbour, in one order, rather than from a running sum over every line:
    # each vertex's mean then depends on its own line alone, to the last bit, however the lines are
    # cut into slices (kernels.row_threads).
    # Most vertices have their whole window: summed in place with no mask. The few within ``k`` of an
    # end are summed again with the mask (times 0 or 1: exact), in the same order, so every vertex
    # gets the bits it got when every vertex was masked, in half the time (20,000 px bench scene).
    n = len(coords)
    padded = np.concatenate([np.zeros((k, 2)), coords, np.zeros((k, 2))])
    total = np.zeros_like(coords)
    for j in range(-k, k + 1):
        total += padded[k + j:k + j + n]
    near_end = np.flatnonzero(half < k)
    if near_end.size:
        part = np.zeros((near_end.size, 2))
        for j in range(-k, k + 1):
            part += padded[near_end + k + j] * (abs(j) <= half[near_end])[:, None]
        total[near_end] = part
    mean = total / (2 * half + 1)[:, None]
    smoothed = shapely.from_ragged_array(GeometryType.LINESTRING, mean, (offsets,))
    return shapely.simplify(smoothed, simplify, preserve_topology=False) if simplify > 0 else smoothed
