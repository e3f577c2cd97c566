"""A scene's output features from its tiles' pieces: the merge on the client.

Objects come from the workers whole (each tile keeps those whose centroid it holds); here they are
filtered by the confidence floors, railcars fitted again to their tracks and trains
(``kernels.car_fit``), clipped to the scene, numbered and measured, and railcars put in consists on
their tracks. Track pieces are joined across tiles and through switches, their gaps
bridged, the joined lines smoothed, and each scored. Everything ends as ``FeatureTable`` columns in
the output coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

from kernels.car_fit import fit_railcars
from kernels.consists import car_axes, find_consists
from kernels.line_smoothing import smooth_lines
from kernels.object_colour import hex_colours
from kernels.row_threads import by_rows
from kernels.track_gaps import BridgeRules, bridge_gaps
from kernels.track_join import join_track_coords
from kernels.vectorise import box_sides, side_attributes
from models.interface import ALL_CLASSES, OBJECT_CLASSES
from service.feature_table import FeatureTable
from service.geojson import GeometryMapper
from service.pieces import Pieces

TRACK_SNAP_PX = 2.5  # track piece ends this close are joined (see kernels.track_join)
# Gaps in track lines bridged (kernels.track_gaps): free ends up to TRACK_BRIDGE_M apart that point
# at each other. Chosen on three validation sets (engine 1.4.0, seeds 7000 / 7100 / 7200, 30 scenes,
# run 15), pooled track recall / precision / F1: not bridged 0.837 / 0.952 / 0.891; up to 100 m
# 0.912 / 0.926 / 0.919; 150 m 0.928 / 0.914 / 0.921 (precision 0.899 on one set); 150 m with a
# bend of 5 degrees, not 8, 0.925 / 0.917 / 0.921 and both at 0.9 or more on each set; 200 m
# (lines of 5 m up) 0.931 / 0.913. Leaving lines under 10 m unbridged: 0.903 / 0.938.
# Chosen again in session 46 on the same seeds rendered by engine 1.7.1 (scenes seen off nadir too;
# shipped weights, bf16), by the same rule, the highest lower of recall and precision: 150 m
# 0.927 / 0.913, worst set 0.891; 120 m 0.922 / 0.916, 0.896; 100 m 0.918 / 0.918, 0.897 (chosen);
# 80 m 0.914 / 0.920, 0.899.
# Held-out, run once after: 150 m 0.928 / 0.892, 100 m 0.923 / 0.905.
TRACK_BRIDGE_M = 100.0
# The rest were chosen on the same sets in session 30 (run 17, tile 256). Pooled recall / precision,
# the lower of the two on the worst set, predicted lines per true line, and the share of predicted
# length drawn twice (within 1.5 m of another line; the truth's own is 0.026):
# - turns and bend alone, direction read over the last 6 m: 0.920 / 0.919, 0.894, 2.6, 0.26 on the
#   first set;
# - and a sideways step of at most 2 m, direction over 12 m: 0.913 / 0.931, 0.907, 2.7, 0.22 on the
#   first set;
# - and 2 m left out at the end for the direction, two passes, small angles across short gaps
#   passing within 1 m sideways: 0.913 / 0.934, 0.905, 2.1, 0.12; within 1.5 m: 0.914 / 0.937,
#   0.911, 1.9, 0.08 (chosen); within 2 m (near half the 4.5 m between tracks): 0.911 / 0.936, 0.900,
#   1.7, 0.06.
TRACK_TANGENT_M = 12.0  # an end's direction is read over this length of its line
TRACK_END_SKIP_M = 2.0  # ... that far back from the end
TRACK_LATERAL_M = 1.5
TRACK_SHIFT_M = 2.0
# A bridge may not cross another line of TRACK_BLOCK_M or more. Chosen in session 31 on the same sets
# (run 17, fp32 on a 2-core Intel Xeon) as the shortest block that keeps recall at 0.9 on every set.
# Pooled recall / precision, the worst set's recall, the share of predicted length drawn twice,
# predicted length over the truth's, and how often the line that follows a true track changes:
# - no block: 0.908 / 0.935, 0.905, 0.078, 1.015, 1,823 times;
# - lines of 150 m or more block: 0.905 / 0.939, 0.900, 0.047, 0.979, 1,657 (chosen);
# - of 80 m or more: 0.904 / 0.940, 0.8998, 0.037, 0.969, 1,619; 100 and 120 m also leave a set
#   under 0.9;
# - every line blocks (first set alone): recall 0.884, since many lines that a right bridge
#   crosses are short stubs between tracks.
TRACK_BLOCK_M = 150.0


# Joined lines are smoothed (kernels.line_smoothing) over TRACK_SMOOTH_M each side, with a vertex
# every TRACK_SMOOTH_STEP_M, then simplified at TRACK_SIMPLIFY_PX. Chosen on the same sets in session
# 30: pooled recall / precision 0.914 / 0.937 unsmoothed, 0.913 / 0.937 at 2, 4 and 6 m; on the
# first set the median distance of a found track's line from the true centre 0.26, 0.23, 0.21,
# 0.20 m, its turning 4.8, 1.5, 0.75, 0.5 degrees a metre (the true lines': 0.02), vertices per
# 100 m 19, 17, 12, 9.
TRACK_SMOOTH_M = 4.0
TRACK_SMOOTH_STEP_M = 1.0
TRACK_SIMPLIFY_PX = 0.25


def track_bridge_rules(px: float) -> BridgeRules:
    """The bridging rules on a grid of ``px`` metre pixels."""
    return BridgeRules(max_gap=TRACK_BRIDGE_M / px, tangent=TRACK_TANGENT_M / px, end_skip=TRACK_END_SKIP_M / px,
                       lateral=TRACK_LATERAL_M / px, max_shift=TRACK_SHIFT_M / px, block_length=TRACK_BLOCK_M / px)


@dataclass(frozen=True)
class TrackLines:
    """The scene's track lines as features: grid pixel LineStrings and their feature ids."""

    lines: np.ndarray
    ids: np.ndarray

    @classmethod
    def empty(cls) -> TrackLines:
        return cls(np.zeros(0, dtype=object), np.zeros(0, dtype=object))


def object_features(objects: Pieces, floors: dict[str, float], mapper: GeometryMapper, px: float,
                     counts: dict[str, int], scene_box: Polygon, tracks: TrackLines,
                     lean: np.ndarray | None = None) -> FeatureTable:
    """Features for every object, ordered by class, then top to bottom and left to right, railcars
    with their consists and tracks (``add_consists``), fitted to the scene's view where it is known
    (``lean``, see ``kernels.car_fit.fit_railcars``). Every step runs on arrays of geometries:
    per-object Python was most of a large scene's merge time."""
    kept = objects.confidence >= np.array([floors[c] for c in ALL_CLASSES])[objects.classes]
    if not kept.any():
        return FeatureTable.empty()
    polygons = objects.geometries()[kept]
    confidence = objects.confidence[kept]
    colours = objects.colours[kept]
    cls = objects.classes[kept].astype(np.int64)  # ALL_CLASSES starts with OBJECT_CLASSES, in order
    centre = by_rows(shapely.centroid, polygons)
    order = np.lexsort((shapely.get_x(centre), shapely.get_y(centre), cls))
    del centre  # a large scene's geometries are most of the client's memory: each set goes when done
    polygons, confidence, cls, colours = polygons[order], confidence[order], cls[order], colours[order]
    railcars = cls == OBJECT_CLASSES.index("railcar")
    cars = fit_railcars(polygons[railcars], tracks.lines, px, lean)
    pieces = np.ones(len(cls), dtype=np.int64)  # a railcar cut in two comes out as two, in its place
    pieces[railcars] = np.bincount(cars.source, minlength=int(railcars.sum()))
    take = np.repeat(np.arange(len(cls)), pieces)
    polygons, confidence, cls, colours = polygons[take], confidence[take], cls[take], colours[take]
    railcars = cls == OBJECT_CLASSES.index("railcar")
    polygons[railcars] = cars.rects
    on_track = np.full(len(cls), -1, dtype=np.int64)
    on_track[railcars] = cars.track
    clipped = polygons.copy()  # a fitted rectangle may poke past the scene's edge: clip those alone
    shapely.prepare(scene_box)
    edge = ~shapely.contains(scene_box, polygons)
    clipped[edge] = shapely.intersection(polygons[edge], scene_box)
    ok = (shapely.get_type_id(clipped) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(clipped)
    polygons, clipped, confidence, cls, colours = polygons[ok], clipped[ok], confidence[ok], cls[ok], colours[ok]
    on_track = on_track[ok]
    names = np.array(OBJECT_CLASSES, dtype=object)[cls]
    ids = np.empty(len(cls), dtype=object)
    for k, name in enumerate(OBJECT_CLASSES):
        mine = np.flatnonzero(cls == k)
        if not mine.size:
            continue
        ids[mine] = [f"{name}-{counts[name] + j}" for j in range(1, mine.size + 1)]
        counts[name] += mine.size
    numeric = {"confidence": np.round(confidence, 4), "area_m2": np.round(shapely.area(clipped) * px * px, 2)}
    railcars = cls == OBJECT_CLASSES.index("railcar")
    text = {"colour": hex_colours(colours)}
    sides = box_sides(polygons[railcars])
    for key, values in side_attributes(*sides[1:], px).items():
        numeric[key] = np.full(len(cls), np.nan)
        numeric[key][railcars] = values
    add_consists(sides, railcars, px, on_track[railcars], tracks.ids, numeric, text)
    del polygons
    return FeatureTable.from_wkb(mapper.to_output_wkb(clipped), ids, names, numeric, text)


def add_consists(sides: tuple[np.ndarray, np.ndarray, np.ndarray], railcars: np.ndarray, px: float,
                  track: np.ndarray, track_ids: np.ndarray, numeric: dict[str, np.ndarray],
                  text: dict[str, np.ndarray]) -> None:
    """Each railcar's consist (``consist_id``, numbered in feature order; ``consist_position``;
    ``consist_cars``) and the track it stands on (``track_id``: ``track_ids[track]`` where ``track``
    >= 0), as ``kernels.consists`` finds them, into the object features' columns (``railcars``
    marks the railcars among them, whose rectangles' ``box_sides`` are ``sides``)."""
    centre, axis, half = car_axes(*sides)
    found = find_consists(centre, axis, half, px)
    n = len(railcars)
    for key, values in (("consist_position", found.position), ("consist_cars", found.cars)):
        numeric[key] = np.full(n, np.nan)
        numeric[key][railcars] = values
    text["consist_id"] = np.full(n, None, dtype=object)
    text["consist_id"][railcars] = [f"consist-{k + 1}" for k in found.consist.tolist()]
    text["track_id"] = np.full(n, None, dtype=object)
    text["track_id"][np.flatnonzero(railcars)[track >= 0]] = track_ids[track[track >= 0]]


def track_features(pieces: Pieces, min_confidence: float, mapper: GeometryMapper, px: float,
                    counts: dict[str, int]) -> tuple[FeatureTable, TrackLines]:
    """The track features, and their lines in grid pixels with their ids (for ``add_consists``)."""
    lines, confidence, bridged_px = joined_tracks(pieces, px)
    del pieces  # the caller handed them over: let them go before the output geometries are made
    keep = confidence >= min_confidence
    lines, confidence, bridged_px = lines[keep], confidence[keep], bridged_px[keep]
    if not len(lines):
        return FeatureTable.empty(), TrackLines.empty()
    # Smoothed once their floor has dropped the faint ones: it changes their shape, not their scores.
    lines = smooth_lines(lines, step=TRACK_SMOOTH_STEP_M / px, half_window=TRACK_SMOOTH_M / px, simplify=TRACK_SIMPLIFY_PX)
    first = counts["track"]
    counts["track"] += len(lines)
    ids = np.array([f"track-{first + j}" for j in range(1, len(lines) + 1)], dtype=object)
    numeric = {"confidence": np.round(confidence, 4), "length_m": np.round(shapely.length(lines) * px, 1),
               "bridged_m": np.round(bridged_px * px, 1)}
    table = FeatureTable.from_wkb(mapper.to_output_wkb(lines), ids, np.full(len(lines), "track", dtype=object), numeric)
    return table, TrackLines(lines, ids)


def joined_tracks(pieces: Pieces, px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join per-tile pieces into lines (an array of LineStrings), bridge the lines' gaps, and give
    each line the length-weighted mean confidence of its pieces (bridges carry no weight) and the
    length it was bridged over, in grid pixels. ``px``: a grid pixel's size in metres.
    Pieces arrive in the order their batches finish, which varies from run to run, and where three
    ends meet, snapping and merging depend on order: so they are put in an order of their own first
    (by first point, last point, then length). The pieces stay coordinate arrays until they are
    joined: as shapely objects they would double the client's peak."""
    if not len(pieces):
        return np.zeros(0, dtype=object), np.zeros(0), np.zeros(0)
    ring = pieces.offsets[0]
    start, end = pieces.coords[ring[:-1]], pieces.coords[ring[1:] - 1]
    length = pieces.line_lengths()
    order = np.lexsort((length, end[:, 1], end[:, 0], start[:, 1], start[:, 0]))
    pieces, length = pieces.take(order), length[order]
    joined, owner = join_track_coords(pieces.coords, pieces.offsets[0], snap_px=TRACK_SNAP_PX)
    joined, line_of, bridged = bridge_gaps(joined, track_bridge_rules(px))
    owner = line_of[owner]
    weight = np.bincount(owner, weights=length, minlength=len(joined))
    total = np.bincount(owner, weights=length * pieces.confidence, minlength=len(joined))
    return joined, np.divide(total, weight, out=np.zeros(len(joined)), where=weight > 0), bridged
