"""Per-tile track pieces joined into continuous centre lines, straight through switches.

Pieces meet where a tile boundary cuts a track (two ends, a pixel or two apart) and at junctions
(switches, crossings), where the skeleton leaves three or four ends a pixel or two apart. Ends of
different pieces within ``snap_px`` of each other make a cluster:

- two ends: moved to their midpoint and joined;
- three or more: the two whose pieces run on most nearly straight through the junction (within
  ``THROUGH_MAX_DEG``) are joined at their midpoint, then the next straightest pair of those left,
  and so on; an end left over (the diverging branch of a switch) is moved onto that joint, so it
  still touches the line it leaves, but stays an end of its own.

So a track runs on as one line through each switch on it, and a branch starts at the switch, as a
person would draw them. Before, at a junction whichever pair of ends the k-d tree listed last was
joined, straight or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely import GeometryType
from shapely.geometry import LineString

from kernels.linemerge import merge_lines

THROUGH_MAX_DEG = 30.0  # a switch's branch leaves at 6-10 degrees; a track turns far less at one
TANGENT_PX = 6.0  # an end's direction: towards the point this far along its piece (3 m at 0.5 m)


def join_tracks(lines: Sequence[LineString] | np.ndarray, snap_px: float = 2.5) -> np.ndarray:
    """Join per-tile track pieces into continuous centre lines (an array of LineStrings)."""
    lines = np.asarray(lines, dtype=object)
    if not len(lines):
        return np.zeros(0, dtype=object)
    _, coords, (offsets,) = shapely.to_ragged_array(lines, include_z=False)
    return join_track_coords(coords, offsets, snap_px)[0]


def join_track_coords(coords: np.ndarray, offsets: np.ndarray, snap_px: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """``join_tracks`` on the pieces' coordinates (N, 2), piece k being ``coords[offsets[k]:offsets[k + 1]]``
    (at least 2 points), which ``coords`` is not changed by; also returns the joined line each piece
    became part of. All on arrays (a k-d tree pairs the ends, ``merge_lines`` joins the pieces): a
    large scene has some 70,000 pieces, and as shapely points, trees and GEOS's line merger they
    were most of the client's peak memory."""
    if len(offsets) < 2:
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64)
    first, last = offsets[:-1], offsets[1:] - 1
    ends = np.stack([coords[first], coords[last]], axis=1).reshape(-1, 2)  # piece k: rows 2k, 2k + 1
    moved, node = _snapped_ends(ends, _inward(coords, offsets), snap_px)
    coords = coords.copy()
    coords[first], coords[last] = moved[0::2], moved[1::2]
    merged, merged_offsets, line_of = merge_lines(coords, offsets, node=node)
    return shapely.from_ragged_array(GeometryType.LINESTRING, merged, (merged_offsets,)), line_of


def _snapped_ends(ends: np.ndarray, inward: np.ndarray, snap_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each end goes, and its node: ends given one node are joined (see the module's rules)."""
    pairs = cKDTree(ends).query_pairs(snap_px, output_type="ndarray")
    pairs = pairs[pairs[:, 0] // 2 != pairs[:, 1] // 2]
    moved, node = ends.copy(), np.arange(len(ends))
    if not len(pairs):
        return moved, node
    graph = coo_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(ends), len(ends)))
    _, cluster = connected_components(graph, directed=False)
    size = np.bincount(cluster)
    # Two ends alone (where a tile boundary cut a track: nearly every cluster) all at once.
    a, b = pairs[size[cluster[pairs[:, 0]]] == 2].T
    moved[a] = moved[b] = (ends[a] + ends[b]) / 2.0
    node[b] = node[a]
    members = np.unique(pairs)
    members = members[size[cluster[members]] > 2]
    order = members[np.argsort(cluster[members], kind="stable")]  # junction after junction
    bounds = np.flatnonzero(np.r_[True, np.diff(cluster[order]) != 0, True]) if order.size else np.zeros(1, dtype=np.int64)
    a, b, group = _through_joints(order, bounds, inward)
    moved[a] = moved[b] = (ends[a] + ends[b]) / 2.0
    node[b] = node[a]
    _leftovers_onto_joints(moved, ends, order, bounds, (a, b), group)
    return moved, node


def _leftovers_onto_joints(moved: np.ndarray, ends: np.ndarray, order: np.ndarray, bounds: np.ndarray,
                           joints: tuple[np.ndarray, np.ndarray], group: np.ndarray) -> None:
    """Moves each junction's ends that no joint took (a switch's branch) onto the junction's first
    joint, the straightest (already moved), so a branch touches the line it leaves; in a junction with
    no joint, to the mean of its ends. Junction ``g`` holds the ends ``order[bounds[g]:bounds[g + 1]]``;
    joint ``k`` joins ends ``joints[0][k]`` and ``joints[1][k]`` of junction ``group[k]``."""
    a, b = joints
    count = bounds.size - 1
    first_joint = np.full(count, -1, dtype=np.int64)
    with_joint, first = np.unique(group, return_index=True)  # joints come junction by junction
    first_joint[with_joint] = a[first]
    joined = first_joint >= 0
    place = np.empty((count, 2))
    place[joined] = moved[first_joint[joined]]
    for g in np.flatnonzero(~joined).tolist():  # few: the mean, rounded as np.mean rounds it
        place[g] = ends[order[bounds[g] : bounds[g + 1]]].mean(axis=0)
    paired = np.zeros(len(ends), dtype=bool)
    paired[a] = paired[b] = True
    left = ~paired[order]
    junction = np.repeat(np.arange(count), np.diff(bounds))
    moved[order[left]] = place[junction[left]]


def _through_joints(order: np.ndarray, bounds: np.ndarray, inward: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joints of every junction at once: pairs of its ends (of different pieces) that run on
    straight through it, the straightest first, each end at most once. Junction ``g`` holds the ends
    ``order[bounds[g]:bounds[g + 1]]``. Returns the joints' two ends and their junction, junction
    after junction, straightest first within one. Junction by junction, a few numpy calls each, the
    snapping took 0.24 s at 20,000 px (2,500 junctions), serial in the merge; this way 0.07 s."""
    starts, sizes = bounds[:-1], np.diff(bounds)
    a_parts, b_parts, g_parts = [], [], []
    for k in np.unique(sizes).tolist():  # junctions of k ends: every pair of them at once
        which = np.flatnonzero(sizes == k)
        i, j = np.triu_indices(k, k=1)
        rows = starts[which][:, None]
        a_parts.append(order[rows + i].ravel())
        b_parts.append(order[rows + j].ravel())
        g_parts.append(np.repeat(which, i.size))
    if not a_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    a, b, group = np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(g_parts)
    other = a // 2 != b // 2
    a, b, group = a[other], b[other], group[other]
    # Straight through: the two pieces leave the junction in opposite directions.
    bend = np.degrees(np.arccos(np.clip(-np.einsum("kd,kd->k", inward[a], inward[b]), -1.0, 1.0)))
    straight = bend <= THROUGH_MAX_DEG
    a, b, group, bend = a[straight], b[straight], group[straight], bend[straight]
    # Junction by junction, straightest first; ties in the order the pairs were listed (stable).
    by = np.lexsort((bend, group))
    used = np.zeros(len(inward), dtype=bool)
    take = []
    for k, (x, y) in enumerate(zip(a[by].tolist(), b[by].tolist(), strict=True)):
        if not used[x] and not used[y]:
            used[x] = used[y] = True
            take.append(k)
    chosen = by[np.asarray(take, dtype=np.int64)]
    return a[chosen], b[chosen], group[chosen]


def _inward(coords: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Unit vectors from each piece end (rows 2k, 2k + 1: piece k's start and end) towards the point
    ``TANGENT_PX`` along the piece (its other end where the piece is shorter); zeros for a piece of
    no length."""
    first, last = offsets[:-1], offsets[1:] - 1
    step = np.hypot(*np.diff(coords, axis=0).T)
    step[offsets[1:-1] - 1] = 0.0  # no step from one piece's last point to the next one's first
    along = np.r_[0.0, np.cumsum(step)]  # never falls, so it can be searched
    ahead = np.minimum(np.searchsorted(along, along[first] + TANGENT_PX), last)
    behind = np.maximum(np.searchsorted(along, along[last] - TANGENT_PX, side="right") - 1, first)
    vectors = np.stack([coords[ahead] - coords[first], coords[behind] - coords[last]], axis=1).reshape(-1, 2)
    norm = np.hypot(*vectors.T)
    return vectors / np.where(norm > 0, norm, 1.0)[:, None]
