"""One tile's model output -> objects and track lines in *grid pixel* coordinates.

Each object is kept only by the tile whose core holds its centroid, so an object cut by a tile
boundary comes out once and whole (the halo shows it whole). Track lines are clipped to the core,
so neighbouring tiles' pieces meet on the boundary and are joined later (``kernels.track_join``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import LineString, Polygon, shape

from kernels.instances import (
    MIN_SEED_PX,
    Blobs,
    blobs_of,
    instance_stats,
    label_instances,
    labelled_pixels,
    peak_seeds,
)
from kernels.object_colour import colour_tuples, inner_of_rectangles, mean_colours
from kernels.skeleton import centre_line_points
from kernels.tiling import Tile

# Pixels this close to no-data are not detected on (see trusted_area).
NODATA_MARGIN_PX = 2
# Smallest objects kept, in square metres: below this it is noise, not a car or a tarp. Real cars
# are at least about 9.7 m x 2.4 m (5th percentiles, shared/USE_CASE.md), 23 m^2; a predicted
# footprint loses a pixel ring at its edges, so the floor sits below that. 20 rather than 16 m^2:
# railcar F1 0.41 -> 0.43 on a validation set (engine seed 7000, not the held-out scenes).
MIN_AREA_M2 = {"railcar": 20.0, "tarped_cargo": 2.0}
# Real railcars are 9.7-22 m long (5th-95th percentile, median 14.5 m: shared/USE_CASE.md). A
# rectangle from SPLIT_FROM_M up and at most SPLIT_MAX_WIDTH_M wide is coupled cars merged into one
# and is cut into cars of about CAR_PITCH_M (a median car and its coupling gap, with slack); wider,
# it is more than one row of cars or not cars at all, and is left alone. One under MIN_LENGTH_M (the
# 5th percentile less a pixel at each end) is part of a car. Railcar F1 on the validation set
# (engine seed 7000, not the held-out scenes) 0.43 -> 0.54.
SPLIT_FROM_M = 26.0
SPLIT_MAX_WIDTH_M = 5.0
CAR_PITCH_M = 16.0
MIN_LENGTH_M = 8.5
# The cuts through such a rectangle go at the lowest car-core probability within GAP_SEARCH_M of
# the equal cuts (sampled every GAP_STEP_PX): railcar F1 on three validation sets (engine seeds
# 7000/7100/7200, 30 scenes, shipped weights) 0.7642 -> 0.7658; within 3 / 5 / 7 m of the equal
# cuts with cars parted at their gaps as well (see vectorise_tile) 0.7689 / 0.7689 / 0.7659.
GAP_SEARCH_M = 5.0
GAP_STEP_PX = 0.5
# A railcar's fitted rectangle can come out wider than the car: it holds the outer corners of a
# stair-stepped pixel set, and a model's footprint may spill past the car's edge. How much is a
# property of the weights, so the trim travels in their metadata (see service.tile_tasks) and is
# zero for a model that draws exact footprints.
# The narrowest a trimmed railcar gets, in metres (the narrowest real cars are about 2.4 m).
MIN_WIDTH_M = 2.0
# Tracks run on under the cars standing on them (see through_cars): a car counts as standing on a
# track when its pixels come within this many model pixels (4 m) of visible track. Validation set
# (engine seed 7000), track recall / precision: cars not counted 0.50 / 0.91; within 0, 2, 4 px
# 0.89 / 0.93, 0.90 / 0.93, 0.92 / 0.92; within 8 px 0.94 / 0.91; every car 0.94 / 0.89.
TRACK_REACH_PX = 8
# A pixel is part of an object's core (its instance seed) above this core probability. Since seeds
# grow through their blob (kernels.instances), a low threshold pays: a faint core still separates
# its car. Validation set (engine seed 7000), railcar F1 at 0.2/0.25/0.3/0.35/0.5/0.65:
# 0.657/0.657/0.664/0.652/0.633/0.628; tarped cargo F1 moved by under 0.003.
CORE_THRESHOLD = 0.3
# Railcars, whose seeds grow over the car probability (see vectorise_tile), do better with fainter
# and smaller seeds: three validation sets (engine seeds 7000/7100/7200, 30 scenes), railcar F1 at
# 0.1/0.15/0.2/0.25/0.3: 0.768/0.775/0.775/0.771/0.769; at 0.2 with seeds of 1/2/4/6 px up:
# 0.778/0.776/0.775/0.771. Tarped cargo keeps 0.3 and 4 px (F1 0.650; 0.647 at 0.2 and 1 px).
RAILCAR_CORE_THRESHOLD = 0.2
RAILCAR_MIN_SEED_PX = 1
# Touching tarps often share one seed at CORE_THRESHOLD, their cores joined by a faint saddle; a
# seed holding two or more parts above CARGO_PEAK_THRESHOLD is split into those (kernels.instances.
# peak_seeds), and the tarps of a blob part where their core map is lowest. Three validation sets
# (engine seeds 7000/7100/7200, 30 scenes), pooled cargo F1 0.6551 as before, at 0.5 / 0.6 / 0.7 /
# 0.8 / 0.9 / 0.95: 0.6589 / 0.6591 / 0.6583 / 0.6613 / 0.6628 / 0.6631; 0.9 grown over the core
# map 0.6639 (over a flat one before). Seeds from h-maxima of the core map (h 0.15 or 0.3), or the
# class mask opened by a pixel first, scored 0.6544-0.6593.
CARGO_PEAK_THRESHOLD = 0.9
# A tarp seed takes only the pixels within CARGO_REACH_M of a seed; the rest of its blob makes
# objects of its own (kernels.instances._beyond_reach): tarps in neighbouring rows, or end to end,
# whose own core the model missed were taken whole by the neighbour's seed. Three validation sets,
# with the peak split above: pooled cargo F1 0.6639 -> 0.6687 / 0.6799 / **0.6833** / 0.6776 /
# 0.6713 at 2 / 2.5 / 3 / 3.5 / 4 m (without the peak split 0.6752 at 3 m); a square reach of 2 or
# 2.5 m (cheaper than the Euclidean distance) 0.6786 / 0.6794.
CARGO_REACH_M = 3.0


@dataclass(frozen=True)
class PixelObject:
    cls: str
    polygon: Polygon  # grid pixel coordinates
    confidence: float
    colour: tuple[int, int, int] | None = None  # mean RGB under it (kernels.object_colour), when known


@dataclass(frozen=True)
class PixelLine:
    line: LineString  # grid pixel coordinates
    confidence: float


def vectorise_tile(
    probs: np.ndarray,
    cores: np.ndarray,
    valid: np.ndarray,
    tile: Tile,
    *,
    classes: tuple[str, ...],
    semantic_classes: tuple[str, ...],
    object_classes: tuple[str, ...],
    pixel_size_m: float,
    railcar_width_trim_m: float = 0.0,
    rgb: np.ndarray | None = None,
) -> tuple[list[PixelObject], list[PixelLine]]:
    """``probs`` (C, S, S) class probabilities, ``cores`` (K, S, S) core probabilities, ``valid``
    (S, S) bool, for one tile's read window. Railcar rectangles are made ``railcar_width_trim_m``
    narrower (see ``narrowed``). Given the window's ``rgb`` (3, S, S) uint8, each object carries its
    colour."""
    winner = winning_class(probs)
    valid = trusted_area(valid)
    objects: list[PixelObject] = []
    cars: Blobs | None = None  # the railcar mask's parts, for the track step too
    for k, cls in enumerate(object_classes):
        if cls not in classes:
            continue
        c = semantic_classes.index(cls)
        class_mask = (winner == c) & valid
        if not class_mask.any():
            continue
        parts = blobs_of(class_mask)
        # Coupled cars part where the model is least sure of a car, their coupling gap; tarps grown
        # that way scored lower (cargo F1 0.650 -> 0.647), so they part where their cores are lowest.
        if cls == "railcar":
            cars = parts
            labels, count = label_instances(class_mask, cores[k] > RAILCAR_CORE_THRESHOLD,
                                            RAILCAR_MIN_SEED_PX, elevation=1.0 - probs[c], blobs=parts)
        else:
            # Only seeds inside the class mask count, so the seeds are worked out in its bounding box.
            seeds = np.zeros_like(class_mask)
            box = parts.box
            seeds[box] = peak_seeds(cores[k][box], CORE_THRESHOLD, CARGO_PEAK_THRESHOLD, MIN_SEED_PX)
            labels, count = label_instances(class_mask, seeds, MIN_SEED_PX, elevation=1.0 - cores[k],
                                            reach_px=CARGO_REACH_M / pixel_size_m, blobs=parts)
        objects.extend(_owned_objects(labels, count, probs[c], cores[k], tile, cls, pixel_size_m,
                                      railcar_width_trim_m, rgb))
    lines: list[PixelLine] = []
    if "track" in classes:
        c = semantic_classes.index("track")
        track = (winner == c) & valid
        if track.any():
            band, support = track, [probs[c]]
            if "railcar" in semantic_classes:
                r = semantic_classes.index("railcar")
                band = through_cars(track, (winner == r) & valid, cars)
                support.append(probs[r])
            lines = _track_lines(band, support, tile)
    return objects, lines


def through_cars(track: np.ndarray, railcar: np.ndarray, cars: Blobs | None = None) -> np.ndarray:
    """The track band with the cars that stand on it: a track runs on under its cars, which the
    model calls railcar, and a car's long axis is the track's centre line. Only cars joined to
    visible track count, so a car with no track in sight draws no line: a connected group of car
    pixels counts when it reaches or touches the ground within ``TRACK_REACH_PX`` of track.
    ``cars``: ``blobs_of(railcar)``, where the caller has it already."""
    if not railcar.any():
        return track.copy()
    # That is: one of its pixels lies within reach + 1 of track. Defined as the parts of track, cars
    # and ground within reach joined together, it is the same (the first pixel a path out of a car
    # group steps onto is track or ground within reach); labelled that way it took twice as long
    # (1.9 against 0.97 ms a tile with track, 152 bench tiles), so the car groups are labelled alone.
    cars = cars or blobs_of(railcar)
    joined = np.zeros(cars.count + 1, dtype=bool)
    joined[cars.labels[square_dilation(track, TRACK_REACH_PX + 1)[cars.box]]] = True
    joined[0] = False
    band = track.copy()
    band[cars.box] |= joined[cars.labels]
    return band


def square_dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction, corners included (a maximum filter of
    side ``2 * radius + 1``), as shifted ORs: per axis, reaches of 1, 2, 4, ... add up to ``radius``,
    so a few whole-array passes do it. 2.7x faster than scipy's separable maximum filter on the
    bench's track bands, and the same pixels."""
    out = mask.copy()
    steps, reach = [], 0
    while reach < radius:
        step = min(max(1, reach + 1), radius - reach)  # 1, 2, 4, ... then what is left
        steps.append(step)
        reach += step
    for axis in (0, 1):
        for r in steps:
            before = out.copy()
            ahead, behind = [slice(None)] * 2, [slice(None)] * 2
            ahead[axis], behind[axis] = slice(r, None), slice(None, -r)
            out[tuple(ahead)] |= before[tuple(behind)]
            out[tuple(behind)] |= before[tuple(ahead)]
    return out


def winning_class(probs: np.ndarray) -> np.ndarray:
    """(C, H, W) scores -> (H, W) uint8 index of the highest, the first on ties, like ``argmax``
    over axis 0, which numpy runs as a strided reduction about 8x slower than these C passes."""
    best = probs[0].copy()
    winner = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, probs.shape[0]):
        higher = probs[c] > best
        winner[higher] = c
        np.maximum(best, probs[c], out=best)
    return winner


def trusted_area(valid: np.ndarray, margin_px: int = NODATA_MARGIN_PX) -> np.ndarray:
    """Valid pixels at least ``margin_px`` from no-data: right at a no-data edge the model sees a
    hard black boundary and tends to call it a car's edge."""
    if valid.all():
        return valid
    # Eroding valid by a square is growing no-data by it (beyond the window counts as valid).
    return ~square_dilation(~valid, margin_px)


def _owned_objects(labels, count, score, core, tile: Tile, cls: str, pixel_size_m: float,
                   width_trim_m: float, rgb: np.ndarray | None) -> list[PixelObject]:  # fmt: skip
    # Worked on as lists of labelled pixels, not whole-tile rasters: objects cover a small part of a tile.
    ys, xs, ids = pixels = labelled_pixels(labels)
    stats = instance_stats(labels, count, score, pixels)
    min_px = MIN_AREA_M2[cls] / pixel_size_m**2
    keep = [
        i + 1
        for i in range(count)
        if stats["area_px"][i] >= min_px and tile.owns(stats["cx"][i] + tile.col, stats["cy"][i] + tile.row)
    ]
    if not keep:
        return []
    kept = np.zeros(count + 1, dtype=bool)
    kept[keep] = True
    mine = kept[ids]
    ys, xs, ids = ys[mine], xs[mine], ids[mine]
    if cls == "railcar":
        labels_kept, rects = _oriented_rectangles(ys, xs, ids, tile)
        origin = (tile.col, tile.row)
        labels_kept, rects = whole_cars(labels_kept, rects, pixel_size_m, centres=core, origin=origin)
        owner = pixel_owners(labels_kept, rects, (ys, xs, ids), origin)
        confidence = piece_scores(labels_kept, rects, (ys, xs, ids), score, stats["score"], owner)
        car_colours = _railcar_colours(rgb, rects, ys, xs, owner, origin) if rgb is not None else [None] * len(rects)
        if width_trim_m:
            rects = narrowed(rects, width_trim_m / pixel_size_m, MIN_WIDTH_M / pixel_size_m)
        return [PixelObject(cls, rect, float(c), colour)
                for rect, c, colour in zip(rects, confidence.tolist(), car_colours, strict=True)]
    # Traced inside the objects' bounding box: GDAL's polygoniser scans every pixel it is given.
    r0, c0 = int(ys.min()), int(xs.min())
    owned = np.zeros((int(ys.max()) - r0 + 1, int(xs.max()) - c0 + 1), dtype=np.int32)
    owned[ys - r0, xs - c0] = ids
    to_grid = Affine.translation(tile.col + c0, tile.row + r0)
    labels, rings = _outer_rings(features.shapes(owned, mask=owned > 0, connectivity=8, transform=to_grid))
    colours = colour_tuples(mean_colours(rgb, ys, xs, ids.astype(np.int64) - 1, count)) if rgb is not None else None
    outlines = _tidy(rings)
    return [PixelObject(cls, outline, float(stats["score"][label - 1]), colours[label - 1] if colours else None)
            for label, outline in zip(labels, outlines, strict=True)]


def _outer_rings(shapes) -> tuple[list[int], list]:
    """From GDAL's polygoniser, each label's outer ring (a sequence of points), in the order the labels
    first come; of a label in several pieces, the ring of its largest piece. Taken from the rings as
    they come and made into polygons all at once by ``_tidy``: a shapely polygon of every piece,
    holes and all, one by one, made vectorising 6 % slower (7.84 against 7.38 ms a tile, 256 tiles of
    a 4,096 px bench scene, one core, fp32 model output)."""
    first: dict[int, dict] = {}
    several: dict[int, list[dict]] = {}
    for geom, value in shapes:
        label = int(value)
        if label in first:
            several.setdefault(label, [first[label]]).append(geom)
        else:
            first[label] = geom
    labels = list(first)
    rings = [max((shape(g) for g in several[k]), key=lambda p: p.area).exterior.coords if k in several
             else first[k]["coordinates"][0] for k in labels]
    return labels, rings


def _railcar_colours(rgb: np.ndarray, rects: np.ndarray, ys: np.ndarray, xs: np.ndarray, owner: np.ndarray,
                     origin: tuple[int, int]) -> list[tuple[int, int, int] | None]:
    """Each railcar rectangle's colour: the mean over the inner part of it of the pixels it owns."""
    _, corner, along, across = rectangle_sides(rects)
    inner = inner_of_rectangles(xs + (origin[0] + 0.5), ys + (origin[1] + 0.5), owner, corner, along, across)
    return colour_tuples(mean_colours(rgb, ys, xs, owner, len(rects), inner))


def _oriented_rectangles(ys: np.ndarray, xs: np.ndarray, ids: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """The smallest rotated rectangle around each instance's pixels (rows, columns and labels in
    raster order, as ``labelled_pixels`` gives them), all instances in one vectorised shapely call,
    no outline traced. The hull of a pixel set is the hull of the outer corners of each row's
    leftmost and rightmost pixel, so four points per row and instance."""
    ids = ids.astype(np.int64)
    order = np.argsort(ids * (int(ys.max()) + 1) + ys, kind="stable")  # by instance, then row; x stays ascending
    ids, ys, xs = ids[order], ys[order], xs[order]
    first = np.flatnonzero(np.r_[True, (ids[1:] != ids[:-1]) | (ys[1:] != ys[:-1])])
    last = np.r_[first[1:], ids.size] - 1
    left, right = xs[first] + tile.col, xs[last] + 1 + tile.col
    top = ys[first] + tile.row
    corners = np.stack([left, top, left, top + 1, right, top, right, top + 1], axis=1).reshape(-1, 2)
    labels, group = np.unique(ids[first], return_inverse=True)
    # One linestring through each instance's corner points: its rectangle is the points' rectangle,
    # and GEOS builds one coordinate sequence per instance instead of one geometry per point.
    rects = shapely.minimum_rotated_rectangle(
        shapely.linestrings(corners.astype(np.float64), indices=np.repeat(group, 4)))
    return labels, rects


def whole_cars(labels: np.ndarray, rects: np.ndarray, pixel_size_m: float, *, centres: np.ndarray | None = None,
               origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Railcar rectangles held to real car lengths: one longer than any single car (and no wider than
    one) is coupled cars the model did not separate, cut across its length into cars of about
    ``CAR_PITCH_M`` (equal ones, or parted at the gaps the car-core map ``centres`` shows: see
    ``_cuts_at_gaps``); one shorter than a car is a fragment and dropped. Returns the labels
    (repeated for the pieces of a cut) and the rectangles, both arrays."""
    if not len(rects):
        return labels, rects
    ok, corner, along, across = rectangle_sides(rects)
    length_m = np.hypot(*along.T) * pixel_size_m
    coupled = (length_m >= SPLIT_FROM_M) & (np.hypot(*across.T) * pixel_size_m <= SPLIT_MAX_WIDTH_M)
    pieces = np.where(coupled, np.maximum(2, np.round(length_m / CAR_PITCH_M)), 1).astype(int)
    keep = ~ok | (length_m >= MIN_LENGTH_M)
    pieces = np.where(keep, pieces, 0)
    cut = ok & (pieces > 1)
    if not cut.any():
        return labels[keep], rects[keep]
    # Piece j of n spans [j/n, (j+1)/n] of the long side, or, given the model's ``centres``, runs
    # between the coupling gaps found near those cuts (see _cuts_at_gaps).
    owner = np.repeat(np.arange(len(rects)), pieces)
    j = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    f0, f1 = j / pieces[owner], (j + 1) / pieces[owner]
    if centres is not None:
        for r in np.flatnonzero(cut).tolist():
            mine = owner == r
            bounds = _cuts_at_gaps(corner[r], along[r], across[r], int(pieces[r]), centres, origin, pixel_size_m)
            f0[mine], f1[mine] = bounds[:-1], bounds[1:]
    start = corner[owner] + along[owner] * f0[:, None]
    end = corner[owner] + along[owner] * f1[:, None]
    quads = np.stack([start, end, end + across[owner], start + across[owner], start], axis=1)
    out = rects[owner]
    sel = cut[owner]
    out[sel] = shapely.polygons(quads[sel])
    return labels[owner], out


def pixel_owners(labels: np.ndarray, rects: np.ndarray, pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
                 origin: tuple[int, int]) -> np.ndarray:
    """For each instance pixel, the index in ``rects`` of the railcar rectangle it belongs to: its
    instance's rectangle, or of the pieces ``whole_cars`` cut the instance into, the one whose span
    along the long side holds it (a pixel beyond every piece's ends goes to the nearest); -1 for a
    pixel of an instance with no rectangle (a fragment ``whole_cars`` dropped). ``labels`` gives
    each rectangle's instance, the pieces of one instance next to each other; ``pixels`` are the
    instances' rows, columns and labels in the tile's read window, whose pixel (0, 0) lies at grid
    ``origin``."""
    ys, xs, ids = pixels
    owner = np.full(ids.size, -1, dtype=np.int64)
    if not len(rects) or not ids.size:
        return owner
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    rect_of = np.full(int(max(ids.max(), values.max())) + 1, -1, dtype=np.int64)
    rect_of[values] = first
    owner = rect_of[ids]
    for label in values[counts > 1].tolist():
        pieces = np.flatnonzero(labels == label)
        _, corner, along, _ = rectangle_sides(rects[pieces])
        mine = np.flatnonzero(ids == label)
        xy = np.column_stack([xs[mine] + origin[0] + 0.5, ys[mine] + origin[1] + 0.5])
        t = np.einsum("pkd,kd->pk", xy[:, None, :] - corner[None], along) / np.einsum("kd,kd->k", along, along)
        owner[mine] = pieces[np.argmin(np.maximum(np.maximum(-t, t - 1.0), 0.0), axis=1)]  # inside a piece: 0
    return owner


def piece_scores(labels: np.ndarray, rects: np.ndarray, pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
                 score: np.ndarray, whole: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each railcar rectangle's confidence: its instance's mean ``score`` (``whole``, by label), or,
    for the pieces ``whole_cars`` cut one instance into, the mean over the pixels each piece owns
    (``owner``, from ``pixel_owners``): a faint car coupled to a clear one no longer shares the
    pair's mean. ``pixels`` are the instances' rows, columns and labels in the tile's read window."""
    confidence = whole[labels - 1].astype(np.float64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cut = counts[inverse] > 1
    if not cut.any():
        return confidence
    ys, xs, _ = pixels
    sel = owner >= 0
    sel[sel] = cut[owner[sel]]
    held = np.bincount(owner[sel], minlength=len(rects))
    sums = np.bincount(owner[sel], weights=score[ys[sel], xs[sel]], minlength=len(rects))
    scored = cut & (held > 0)
    confidence[scored] = sums[scored] / held[scored]
    return confidence


def _cuts_at_gaps(corner: np.ndarray, along: np.ndarray, across: np.ndarray, n: int, centres: np.ndarray,
                  origin: tuple[int, int], pixel_size_m: float) -> np.ndarray:
    """Where to cut one rectangle of ``n`` coupled cars, as fractions of its long side from 0 to 1:
    each inner cut at the lowest ``centres`` score (the model's car-core probability, whose pixel
    (0, 0) lies at grid ``origin``) along the rectangle's middle, within ``GAP_SEARCH_M`` of the
    equal cut, and at least ``MIN_LENGTH_M`` after the cut before it."""
    length = float(np.hypot(*along))
    t = np.arange(0.0, length, GAP_STEP_PX) / length
    h, w = centres.shape
    profile = np.zeros(t.size)
    for side in (0.25, 0.5, 0.75):  # three lines along the car, so one stray pixel does not decide
        xy = corner + across * side - np.asarray(origin, dtype=np.float64) + np.outer(t, along)
        cols = np.clip(np.floor(xy[:, 0]).astype(np.intp), 0, w - 1)
        rows = np.clip(np.floor(xy[:, 1]).astype(np.intp), 0, h - 1)
        profile += centres[rows, cols]
    reach, shortest = GAP_SEARCH_M / pixel_size_m / length, MIN_LENGTH_M / pixel_size_m / length
    bounds = [0.0]
    for k in range(1, n):
        near = np.flatnonzero((np.abs(t - k / n) <= reach) & (t >= bounds[-1] + shortest))
        near = near[np.argsort(np.abs(t[near] - k / n), kind="stable")]  # ties: the one nearest k / n
        bounds.append(float(t[near[np.argmin(profile[near])]]) if near.size else k / n)
    bounds.append(1.0)
    return np.asarray(bounds)


def narrowed(rects: np.ndarray, trim_px: float, min_width_px: float) -> np.ndarray:
    """Rotated rectangles made ``trim_px`` narrower across their short side (half at each long
    edge), never below ``min_width_px`` (one already narrower stays as it is); the long side and
    the centre line along it are kept. Anything not a four-cornered rectangle is returned unchanged."""
    if not len(rects):
        return rects
    ok, corner, along, across = rectangle_sides(rects)
    width = np.hypot(*across.T)
    new_width = np.minimum(width, np.maximum(width - trim_px, min_width_px))
    sel = ok & (new_width < width)
    if not sel.any():
        return rects
    unit = across[sel] / width[sel, None]
    start = corner[sel] + unit * ((width[sel] - new_width[sel]) / 2)[:, None]
    side = unit * new_width[sel, None]
    quads = np.stack([start, start + along[sel], start + along[sel] + side, start + side, start], axis=1)
    out = rects.copy()
    out[sel] = shapely.polygons(quads)
    return out


def _tidy(rings: list) -> np.ndarray:
    """Stair-stepped pixel outlines (outer rings) -> simpler valid polygons with the same footprints,
    all at once. Pixels that touch only corner to corner make an outline pinch at that corner, which
    is not a valid ring (the merge used to drop such objects): a buffer of a hundredth of a pixel
    joins them."""
    if not rings:
        return np.zeros(0, dtype=object)
    sizes = [len(ring) for ring in rings]
    coords = np.array([point for ring in rings for point in ring], dtype=np.float64)
    outline = shapely.polygons(shapely.linearrings(coords, indices=np.repeat(np.arange(len(rings)), sizes)))
    pinched = ~shapely.is_valid(outline)
    if pinched.any():
        outline[pinched] = shapely.buffer(outline[pinched], 0.01, join_style="mitre")
    simple = shapely.simplify(outline, 0.7, preserve_topology=True)
    return np.where(shapely.is_valid(simple) & ~shapely.is_empty(simple), simple, outline)


def _track_lines(band: np.ndarray, support: list[np.ndarray], tile: Tile) -> list[PixelLine]:
    """Centre lines of ``band``, simplified and clipped to the tile's core, in one shapely call per
    step over all of a tile's lines (per line, the calls were a fifth of a tile's track time). Each
    line's confidence is the mean, over its skeleton pixels, of the summed ``support`` probabilities
    (track, and railcar where a track runs on under its cars): a line the model barely called track,
    such as a field's edge, scores low even in a tile full of clear track."""
    xy, sizes = centre_line_points(band)
    if not sizes.size:
        return []
    x0, y0 = tile.core_col, tile.core_row
    path_of = np.repeat(np.arange(sizes.size), sizes)
    cols, rows = xy[:, 0].astype(np.intp), xy[:, 1].astype(np.intp)  # pixel centres: x + 0.5 -> x
    score = sum(s[rows, cols] for s in support)
    confidence = np.minimum(np.bincount(path_of, weights=score) / sizes, 1.0)  # sums may round over 1
    lines = shapely.linestrings(xy + (tile.col, tile.row), indices=path_of)
    # Plain Douglas-Peucker: the topology-preserving variant took 3.7 ms a tile against 0.2 and gave
    # the same lines on 16 bench tiles (a centre line does not fold back within 0.75 px of itself).
    simple = shapely.simplify(lines, 0.75, preserve_topology=False)
    clipped = shapely.clip_by_rect(simple, x0, y0, x0 + tile.core_width, y0 + tile.core_height)
    parts, part_of = shapely.get_parts(clipped, return_index=True)
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.LINESTRING) & (shapely.length(parts) >= 2)
    return [PixelLine(part, float(confidence[k])) for part, k in zip(parts[keep], part_of[keep].tolist(), strict=True)]


def box_sides(rects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A corner, the long side and the short side (as vectors from that corner) of each polygon in an
    array of rotated rectangles (exterior rings of 5 coordinates, as shapely makes them); of its
    smallest rotated rectangle for any other polygon."""
    ok, corner, along, across = rectangle_sides(rects)
    odd = ~ok  # not one of ours: fit one
    if odd.any():
        corner[odd], along[odd], across[odd] = rectangle_sides(shapely.oriented_envelope(rects[odd]))[1:]
    return corner, along, across


def oriented_box_attributes(rects: np.ndarray, pixel_size_m: float) -> dict[str, np.ndarray]:
    """Length, width (metres) and heading (degrees clockwise from grid-up, 0..180) of each rectangle
    in an array of rotated rectangles (see ``box_sides``)."""
    _, along, across = box_sides(rects)
    return side_attributes(along, across, pixel_size_m)


def side_attributes(along: np.ndarray, across: np.ndarray, pixel_size_m: float) -> dict[str, np.ndarray]:
    """``oriented_box_attributes`` of rectangles given by their long and short sides (``box_sides``)."""
    length, width = np.hypot(*along.T), np.hypot(*across.T)
    heading = np.degrees(np.arctan2(along[:, 0], -along[:, 1])) % 180.0
    return {
        "length_m": np.round(length * pixel_size_m, 2),
        "width_m": np.round(width * pixel_size_m, 2),
        "heading_deg": np.round(heading, 1),
    }


def rectangle_sides(rects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For rotated rectangles (exterior rings of 5 coordinates): which ones are such rectangles, and
    for those a corner, the vector of the long side from it and of the short side (zeros for the
    others)."""
    ring, count = _exteriors(rects)
    ok = count == 5
    corners = np.zeros((len(rects), 5, 2))
    corners[ok] = shapely.get_coordinates(ring[ok]).reshape(-1, 5, 2)
    along, across = corners[:, 1] - corners[:, 0], corners[:, 3] - corners[:, 0]
    swap = np.hypot(*along.T) < np.hypot(*across.T)
    along[swap], across[swap] = across[swap], along[swap].copy()
    return ok, corners[:, 0], along, across


def _exteriors(polygons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each polygon, something whose coordinates are those of its exterior ring, and how many
    there are (0 for anything not a polygon). A polygon without holes stands for its own ring:
    making a ring geometry for each of a large scene's railcars took a quarter of a second, three
    times over, in the merge."""
    rings = polygons
    holed = shapely.get_num_interior_rings(polygons) > 0
    if holed.any():
        rings = polygons.copy()
        rings[holed] = shapely.get_exterior_ring(polygons[holed])
    polygon = shapely.get_type_id(polygons) == shapely.GeometryType.POLYGON
    return rings, np.where(polygon, shapely.get_num_coordinates(rings), 0)
