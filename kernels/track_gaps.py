"""Bridging gaps in track centre lines, after the per-tile pieces are joined.

A track line that stops, and another that starts further on pointing back at it, are most often one
track the model lost sight of in between: under a long train it did not see track beside, in a
shadow, past a switch. Two free line ends are bridged by a straight piece (``BridgeRules``, in
grid pixels) when:

- they are at most ``max_gap`` apart;
- each end's direction turns by at most ``max_turn_deg`` onto the straight between them. The
  direction is read along the line from ``end_skip`` to ``end_skip + tangent`` back from the end:
  a line's last pixels are where the skeleton frays, and where an earlier bridge made a kink;
- the two turns agree to within ``max_bend_deg``. Equal turns are a gentle curve; opposite turns
  make an S, which is a jump across to the neighbouring track;
- the sideways step that S makes, ``gap * sin(|turn difference| / 2)``, is at most ``max_shift``.
  The bend alone lets a long bridge step across: onto a track 4.5 m to the side the two turns
  differ by 2 * atan(4.5 m / gap), under 5 degrees once the gap is over 103 m.

A bridge also may not cross another line at least ``block_length`` long. One that does runs
alongside that line, which already draws the track (the track would be drawn twice), or cuts across
the tracks between. Short lines do not block: many are the skeleton's stubs between tracks, and a
bridge over one is mostly right.

Over a gap of a few pixels the angles say little (a pixel of wiggle turns them by tens of degrees),
so a turn or half the bend also passes when the sideways distance it makes over the gap is at most
``lateral``: a third of the way to the next track.

Each end is bridged at most once per pass, nearest pairs first. A second pass bridges the ends of
lines the first one joined, whose directions are then read on the longer line. All of it runs on
arrays: a large scene has tens of thousands of lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely import GeometryType

from kernels.linemerge import merge_lines
from kernels.row_threads import by_rows, map_slices


@dataclass(frozen=True)
class BridgeRules:
    """Which free line ends are bridged (see the module's docstring); lengths in grid pixels."""

    max_gap: float
    tangent: float
    end_skip: float
    lateral: float
    max_shift: float
    max_turn_deg: float = 15.0
    max_bend_deg: float = 5.0
    passes: int = 2
    block_length: float = np.inf


def bridge_gaps(lines: np.ndarray, rules: BridgeRules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lines`` (an array of LineStrings) with their gaps bridged and the lines merged through the
    bridges. Also returns the new line each input line became part of, and each new line's length
    drawn across gaps (what the model did not see: a user may want to know)."""
    lines = np.asarray(lines, dtype=object)
    line_of, bridged = np.arange(len(lines)), np.zeros(len(lines))
    for _ in range(rules.passes):
        bridges = gap_bridges(lines, rules)
        if not len(bridges):
            break
        lines, step_of, step_bridged = _join_through(lines, bridges)
        bridged = np.bincount(step_of, weights=bridged, minlength=len(lines)) + step_bridged
        line_of = step_of[line_of]
    return lines, line_of, bridged


def _join_through(lines: np.ndarray, bridges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lines merged through the bridges (B, 2, 2); the merged line of each input line; each
    merged line's bridged length."""
    _, coords, (offsets,) = shapely.to_ragged_array(lines, include_z=False)
    coords = np.concatenate([coords, bridges.reshape(-1, 2)])
    offsets = np.concatenate([offsets, offsets[-1] + 2 * np.arange(1, len(bridges) + 1)])
    merged, merged_offsets, line_of = merge_lines(coords, offsets)
    bridged = np.bincount(line_of[len(lines):], weights=np.hypot(*(bridges[:, 1] - bridges[:, 0]).T),
                          minlength=len(merged_offsets) - 1)
    return shapely.from_ragged_array(GeometryType.LINESTRING, merged, (merged_offsets,)), line_of[: len(lines)], bridged


def gap_bridges(lines: np.ndarray, rules: BridgeRules) -> np.ndarray:
    """The bridges (B, 2, 2): each runs from one line's end point to another's, exactly."""
    if len(lines) < 2:
        return np.zeros((0, 2, 2))
    length = shapely.length(lines)
    # Row 2k is line k's start, row 2k + 1 its end. A short line's direction leaves out the third of
    # it nearest the end.
    ends = by_rows(lambda part: shapely.get_coordinates(
        np.stack([shapely.get_point(part, 0), shapely.get_point(part, -1)], axis=1).ravel()), lines)
    skip = np.minimum(rules.end_skip, length / 3)
    direction = _point_back(lines, length, skip) - _point_back(lines, length, np.minimum(skip + rules.tangent, length))
    norm = np.hypot(*direction.T)
    direction = direction / np.where(norm > 0, norm, 1.0)[:, None]
    # Free ends only: not shared with another end (a junction, or a closed line's own start).
    _, where, shared = np.unique(ends, axis=0, return_inverse=True, return_counts=True)
    free = (shared[where.reshape(-1)] == 1) & (norm > 0)
    candidates = np.flatnonzero(free)
    if candidates.size < 2:
        return np.zeros((0, 2, 2))
    points, heading = ends[candidates], direction[candidates]
    tree = cKDTree(points)
    passing = [np.zeros(0, dtype=np.int64)]
    # Pairs are looked for in the cone ahead of each end (see _cone_circles) a chunk of ends at a
    # time and tested at once: in a dense yard every end within reach of another is millions of
    # pairs, hundreds of MB at 20,000 px, of which a few thousand pass. The first circle also holds
    # the steeper pairs a few pixels from the end that the lateral rule passes.
    # The chunks of one circle are searched on the merge's threads at once.
    chunks = [slice(first, first + CHUNK) for first in range(0, len(points), CHUNK)]
    for centre, radius in _cone_circles(rules.max_gap, np.tan(np.radians(rules.max_turn_deg))):

        def search(chunk: slice, centre: float = centre, radius: float = radius) -> np.ndarray:
            probes = points[chunk] + heading[chunk] * centre
            hits = cKDTree(probes).sparse_distance_matrix(tree, radius, output_type="ndarray")
            return _passing(hits["i"] + chunk.start, hits["j"], points, heading, candidates, rules)

        passing += map_slices(search, chunks)
    # A pair found from both of its ends, or by two circles, is kept once.
    a, b = np.divmod(np.unique(np.concatenate(passing)), len(points))
    order = np.argsort(np.hypot(*(points[b] - points[a]).T), kind="stable")  # nearest first
    # Only the pairs the nearest-first choice takes are tested for crossings (a few thousand of tens
    # of thousands); those that cross are struck out and the choice made again, until it takes none
    # that crosses. That is the choice among only the pairs that do not cross: a pair it never
    # takes changes nothing.
    crosses = _LongLines(lines, length, rules.block_length)
    allowed, tested = np.ones(a.size, dtype=bool), np.zeros(a.size, dtype=bool)
    while True:
        chosen = _nearest_first(order[allowed[order]], a, b, len(points))
        fresh = chosen[~tested[chosen]]
        tested[fresh] = True
        crossing = crosses.crossed(points[a[fresh]], points[b[fresh]], candidates[a[fresh]] // 2,
                                   candidates[b[fresh]] // 2)
        if not crossing.any():
            break
        allowed[fresh[crossing]] = False
    return np.stack([points[a[chosen]], points[b[chosen]]], axis=1) if chosen.size else np.zeros((0, 2, 2))


def _nearest_first(order: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """The pairs (a[i], b[i]) taken in ``order`` while both of their ends are free (ends 0..n-1)."""
    used = np.zeros(n, dtype=bool)
    chosen = []
    for i in order.tolist():
        if not used[a[i]] and not used[b[i]]:
            used[a[i]] = used[b[i]] = True
            chosen.append(i)
    return np.asarray(chosen, dtype=np.int64)


class _LongLines:
    """The lines of at least ``block_length``, to test bridges against."""

    def __init__(self, lines: np.ndarray, length: np.ndarray, block_length: float):
        self.index = np.flatnonzero(length >= block_length)
        self.tree = shapely.STRtree(lines[self.index]) if self.index.size else None

    def crossed(self, start: np.ndarray, end: np.ndarray, line_a: np.ndarray, line_b: np.ndarray) -> np.ndarray:
        """Which straight bridges from ``start`` to ``end``, joining lines ``line_a`` and ``line_b``,
        cross another of the long lines."""
        crossing = np.zeros(len(start), dtype=bool)
        if self.tree is None or not len(start):
            return crossing
        # The tree's "crosses" query works out the full intersection matrix of every pair whose boxes
        # meet; "intersects" is cheap, and "crosses" then runs on the few pairs that meet at all, less
        # the bridge's own two lines (the same pairs, in a third of the time at 20,000 px).
        bridges = shapely.linestrings(np.stack([start, end], axis=1))
        bridge, k = self.tree.query(bridges, predicate="intersects")
        own = (self.index[k] == line_a[bridge]) | (self.index[k] == line_b[bridge])
        bridge, k = bridge[~own], k[~own]
        crossing[bridge[shapely.crosses(bridges[bridge], self.tree.geometries[k])]] = True
        return crossing


CHUNK = 4096  # ends whose cones are searched at once
# The cone ahead of an end, cut at these fractions of its length, each piece held in one circle.
_CONE_CUTS = (0.0, 0.25, 0.55, 1.0)


def _cone_circles(reach: float, spread: float) -> list[tuple[float, float]]:
    """(distance ahead, radius) of circles that together hold the cone ahead of an end, up to
    ``reach`` along it and ``spread`` times as far to the side as ahead: a fifth of the area of the
    full circle of ``reach`` when the sides turn 15 degrees."""
    return [((x0 + x1) / 2 * reach, float(np.hypot((x1 - x0) / 2, x1 * spread)) * reach)
            for x0, x1 in pairwise(_CONE_CUTS)]


def _passing(a: np.ndarray, b: np.ndarray, points: np.ndarray, heading: np.ndarray, line_end: np.ndarray,
             rules: BridgeRules) -> np.ndarray:
    """Codes ``min * n + max`` of the pairs of ends (a, b) that may be bridged (see the module
    docstring); ``line_end`` numbers each end 2k or 2k + 1 by its line k."""
    other = line_end[a] // 2 != line_end[b] // 2
    a, b = a[other], b[other]
    step = points[b] - points[a]
    gap = np.hypot(*step.T)
    chord = step / np.where(gap > 0, gap, 1.0)[:, None]
    # Signed turns, travelling from a to b: a's direction onto the chord, then the chord onto b's
    # direction of travel (the reverse of the way b's end points). The same for the pair (b, a).
    turn_a = _signed_angle(heading[a], chord)
    turn_b = _signed_angle(chord, -heading[b])
    half_bend = np.abs(turn_a - turn_b) / 2

    def within(angle: np.ndarray, limit_deg: float) -> np.ndarray:
        """The angle is small, or ahead and small across the gap (module docstring)."""
        across = (gap * np.abs(np.sin(angle)) <= rules.lateral) & (np.abs(angle) < np.pi / 2)
        return (np.abs(angle) <= np.radians(limit_deg)) | across

    ok = ((gap > 0) & (gap <= rules.max_gap) & within(turn_a, rules.max_turn_deg) & within(turn_b, rules.max_turn_deg)
          & within(half_bend, rules.max_bend_deg / 2) & (gap * np.sin(half_bend) <= rules.max_shift))
    return np.minimum(a[ok], b[ok]) * len(points) + np.maximum(a[ok], b[ok])


def _point_back(lines: np.ndarray, length: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Rows 2k and 2k + 1: the points ``back[k]`` from line k's start and from its end."""
    along = np.stack([back, length - back], axis=1).ravel()
    return by_rows(lambda line, at: shapely.get_coordinates(shapely.line_interpolate_point(line, at)),
                   np.repeat(lines, 2), along)


def _signed_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle (radians, anticlockwise positive) turning unit vectors ``u`` onto ``v``, row by row."""
    return np.arctan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(axis=1))
