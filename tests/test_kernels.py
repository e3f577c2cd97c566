"""Instance extraction, centre lines and track joining: small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import shapely.affinity
import torch
from shapely.geometry import LineString

from kernels.instances import instance_stats, label_instances, peak_seeds
from kernels.normalise import normalise
from kernels.skeleton import centre_lines
from kernels.tiling import plan_tiles
from kernels.track_join import join_tracks
from kernels.vectorise import oriented_box_attributes, vectorise_tile
from models.interface import OBJECT_CLASSES, SEMANTIC_CLASSES


def coupled_train(n=4, length=28, width=6, gap=2, erode=2):
    mask = np.zeros((40, n * (length + gap) + 20), bool)
    core = np.zeros_like(mask)
    for i in range(n):
        c = 10 + i * (length + gap)
        mask[10 : 10 + width, c : c + length] = True
        core[10 + erode : 10 + width - erode, c + erode : c + length - erode] = True
    return mask, core


def test_coupled_cars_become_one_instance_each():
    mask, core = coupled_train()
    mask[10:16, :] |= mask[10:16, :].any(axis=0)  # close the 2 px gaps: the semantic mask is one blob
    labels, n = label_instances(mask, core)
    assert n == 4
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert (labels[mask] > 0).all() and (labels[~mask] == 0).all()
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= 6 * 26  # every car keeps about its own footprint


def test_a_pixel_joins_the_seed_it_reaches_inside_its_blob_not_the_nearest_across_a_gap():
    # A hook: top bar, right column, bottom bar. Seed A sits at the top bar's left end, seed B in the
    # middle of the bottom bar, 3 px of background below the top bar. The top bar's pixel at x=16
    # is 5 px from B straight across the gap but 13 px from A along the bar, and 29 px from B
    # through the blob: it belongs to A's object.
    mask = np.zeros((12, 34), dtype=bool)
    mask[0:3, 0:31] = True
    mask[0:10, 28:31] = True
    mask[7:10, 0:31] = True
    core = np.zeros_like(mask)
    core[0:3, 0:4] = True
    core[7:10, 14:19] = True
    labels, n = label_instances(mask, core)
    assert n == 2
    assert labels[1, 16] == labels[1, 1] != labels[8, 16]


def test_coupled_cars_part_on_the_ridge_of_an_elevation_map():
    """Two seeds in one 60 px bar, each 4 px from its end. Grown flat, they meet half way (x = 30);
    over an elevation with a ridge at x = 22 (the gap the model saw), they meet there."""
    mask = np.ones((6, 60), dtype=bool)
    core = np.zeros_like(mask)
    core[1:5, 2:6] = True
    core[1:5, 54:58] = True
    flat, n = label_instances(mask, core)
    assert n == 2 and (flat[:, :30] == flat[0, 0]).all() and (flat[:, 30:] == flat[0, 59]).all()
    elevation = np.zeros(mask.shape, dtype=np.float32)
    elevation[:, 22] = 1.0
    ridged, n = label_instances(mask, core, elevation=elevation)
    assert n == 2
    assert (ridged[:, :22] == ridged[0, 0]).all() and (ridged[:, 23:] == ridged[0, 59]).all()


def test_blob_without_a_core_is_kept():
    mask, core = coupled_train(n=2)
    core[:, :40] = False  # the model missed the first car's core
    labels, n = label_instances(mask, core)
    assert n == 2


def touching_tarps_core(saddle: float, second_peak: float = 0.95, second_px: int = 14) -> np.ndarray:
    """The core map of two tarps end to end in one 40 px bar: each peaks along its middle, and
    between them the map falls to ``saddle``; the right peak (``second_peak``) spans ``second_px``
    columns."""
    core = np.full((8, 40), 0.6, dtype=np.float32)
    core[:, 18:22] = saddle
    core[2:6, 3:17] = 0.95
    core[2:6, 23:23 + second_px] = second_peak
    return core


def test_touching_tarps_whose_cores_run_together_still_get_a_seed_each():
    core = touching_tarps_core(saddle=0.5)  # above the low threshold: one seed at 0.3
    assert label_instances(np.ones(core.shape, bool), core > 0.3)[1] == 1
    seeds = peak_seeds(core, 0.3, 0.9, 4)
    labels, n = label_instances(np.ones(core.shape, bool), seeds, elevation=1.0 - core)
    assert n == 2
    assert (labels[:, :18] == labels[0, 0]).all() and (labels[:, 22:] == labels[0, 39]).all()


def test_a_seed_with_one_peak_or_a_peak_too_small_stays_whole():
    for core in (touching_tarps_core(saddle=0.5, second_peak=0.8),  # one part above 0.9
                 touching_tarps_core(saddle=0.5, second_px=1)):     # the second part: 4 px, under 5
        seeds = peak_seeds(core, 0.3, 0.9, 5)
        np.testing.assert_array_equal(seeds, core > 0.3)
    apart = touching_tarps_core(saddle=0.1)  # already two seeds at 0.3: left as they are
    np.testing.assert_array_equal(peak_seeds(apart, 0.3, 0.9, 4), apart > 0.3)


def vectorised_tarps(mask: np.ndarray, core: np.ndarray) -> list:
    """The tarped cargo ``vectorise_tile`` finds in one 256 px tile whose model output is background
    but for tarp ``mask`` and its ``core`` probabilities, both placed at read-window pixel (140, 140)."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    cores = np.zeros((2, size, size), np.float32)
    window = (slice(140, 140 + mask.shape[0]), slice(140, 140 + mask.shape[1]))
    probs[0][window][mask] = 0
    probs[2][window][mask] = 1
    cores[1][window] = core
    objs, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("tarped_cargo",),
                             semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    return objs


def test_vectorise_gives_touching_tarps_one_object_each():
    core = touching_tarps_core(saddle=0.5)  # 8 x 40 px: two 10 m x 4 m tarps end to end
    objs = vectorised_tarps(np.ones(core.shape, bool), core)
    assert sorted(round(o.polygon.area) for o in objs) == [8 * 20, 8 * 20]


def tarps_in_two_rows() -> tuple[np.ndarray, np.ndarray]:
    """Two 8 x 16 px tarps (4 x 8 m) in neighbouring rows, joined by a 2 px band of tarp across the
    4 px between them (the model's mask bridging the gap); only the top one has a core."""
    mask = np.zeros((40, 30), dtype=bool)
    mask[4:12, 6:22] = True
    mask[16:24, 6:22] = True
    mask[12:16, 13:15] = True
    core = np.zeros_like(mask)
    core[6:10, 9:19] = True
    return mask, core


def test_a_tarp_without_a_core_is_not_taken_by_its_neighbours_seed():
    mask, core = tarps_in_two_rows()
    labels, n = label_instances(mask, core)
    assert n == 1  # grown from the one seed, the bridge hands it both tarps
    labels, n = label_instances(mask, core, reach_px=6)
    assert n == 2
    assert (labels[4:12, 6:22] == labels[8, 14]).all()  # the seeded tarp whole: within 6 px of its seed
    assert (labels[17:24, 6:22] == labels[20, 14]).all() and labels[20, 14] != labels[8, 14]


def test_an_object_within_reach_of_its_seed_stays_whole():
    mask, core = coupled_train(n=2, length=12, width=8, gap=2, erode=2)
    labels, n = label_instances(mask, core, reach_px=6)
    assert n == 2
    assert (labels[mask] > 0).all() and (labels[~mask] == 0).all()


def test_vectorise_gives_an_unseeded_tarp_beside_a_seeded_one_its_own_object():
    mask, core = tarps_in_two_rows()
    objs = vectorised_tarps(mask, np.where(core, 0.95, 0.0))
    assert len(objs) == 2
    centres = sorted(round(o.polygon.centroid.y) for o in objs)
    assert centres[0] == pytest.approx(140 - 32 + 8, abs=1.5) and centres[1] == pytest.approx(140 - 32 + 20, abs=1.5)


def test_instance_stats_centroid_and_score():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 2:6] = 1
    stats = instance_stats(labels, 1, np.full((10, 10), 0.75, np.float32))
    assert stats["area_px"][0] == 8
    assert (stats["cx"][0], stats["cy"][0]) == pytest.approx((4.0, 3.0))
    assert stats["score"][0] == pytest.approx(0.75)


def test_centre_line_of_a_band():
    band = np.zeros((50, 200), bool)
    band[20:23, 10:190] = True
    lines = centre_lines(band)
    assert len(lines) == 1
    xs, ys = lines[0][:, 0], lines[0][:, 1]
    assert ys.min() >= 20.5 and ys.max() <= 22.5
    assert xs.max() - xs.min() > 170


def test_centre_lines_cover_every_skeleton_step_once():
    """Chains, junctions, loops and nodes side by side: with no length floor, the polylines step
    along every pair of neighbouring skeleton pixels exactly once, and only along those."""
    from skimage.morphology import skeletonize

    rng = np.random.default_rng(3)
    for _ in range(40):
        band = rng.random((48, 48)) < rng.uniform(0.15, 0.6)
        ys, xs = np.nonzero(skeletonize(band))
        pixels = set(zip((xs + 0.5).tolist(), (ys + 0.5).tolist(), strict=True))
        edges = {frozenset([(x, y), (x + dx, y + dy)]) for x, y in pixels for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                 if (dx or dy) and (x + dx, y + dy) in pixels}
        steps = [frozenset(map(tuple, pair)) for line in centre_lines(band, min_length_px=0)
                 for pair in zip(line[:-1].tolist(), line[1:].tolist(), strict=True)]
        assert len(steps) == len(set(steps))
        assert set(steps) == edges


def test_centre_line_of_a_ring_is_closed():
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    lines = centre_lines((r > 20) & (r < 24))
    assert len(lines) == 1
    assert tuple(lines[0][0]) == tuple(lines[0][-1])
    assert np.hypot(lines[0][:, 0] - 40, lines[0][:, 1] - 40) == pytest.approx(22, abs=1.5)


def test_centre_lines_of_a_junction_meet_at_it():
    band = np.zeros((60, 120), bool)
    band[28:31, 5:115] = True  # a through track
    band[5:29, 58:61] = True  # a spur joining it from above
    lines = centre_lines(band)
    assert len(lines) == 3  # the junction's own few pixels make steps too short to keep
    near = [min(np.hypot(*(end - (59.5, 29.0))) for end in (line[0], line[-1])) for line in lines]
    assert max(near) <= 1.5  # each line reaches the junction (join_tracks snaps within 2.5 px)


def test_join_tracks_snaps_pieces_across_a_boundary():
    a = LineString([(0, 10.0), (100, 10.0)])
    b = LineString([(100, 11.0), (200, 11.5)])  # the neighbour's skeleton is a pixel off
    c = LineString([(0, 50.0), (200, 50.0)])
    joined = join_tracks([a, b, c])
    assert len(joined) == 2
    assert max(j.length for j in joined) == pytest.approx(200, abs=2)


def test_oriented_box_attributes():
    from shapely.geometry import Polygon

    upright = Polygon([(0, 0), (0, 28), (6, 28), (6, 0)])  # 28 px tall: a car along grid-up
    # 20 x 4 px along a heading of 60 degrees clockwise from grid-up (grid y points down).
    tilted = shapely.affinity.rotate(Polygon([(0, 0), (0, -20), (4, -20), (4, 0)]), 60, origin=(0, 0))
    outline = Polygon([(0, 0), (0, 10), (0, 20), (4, 20), (4, 0)])  # 6 coordinates: refitted
    attrs = oriented_box_attributes(np.array([upright, tilted, outline]), 0.5)
    assert attrs["length_m"].tolist() == [14.0, 10.0, 10.0]
    assert attrs["width_m"].tolist() == [3.0, 2.0, 2.0]
    assert attrs["heading_deg"][0] % 180 == pytest.approx(0, abs=0.1)
    assert attrs["heading_deg"][1] == pytest.approx(60, abs=0.1)


def test_vectorise_keeps_only_objects_owned_by_the_tile():
    tiles = plan_tiles(512, 256, 256, 32)
    size = tiles[0].size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    cores = np.zeros((2, size, size), np.float32)
    # Coupled cars with centroids at grid x = 234 (tile 0's core) and x = 264 (tile 1's core).
    for x0 in (220, 250):
        sl = (slice(32 + 100, 32 + 106), slice(32 + x0, 32 + x0 + 28))  # grid x0 .. x0 + 28
        probs[0][sl] = 0
        probs[1][sl] = 1
        cores[0][32 + 102 : 32 + 104, 32 + x0 + 2 : 32 + x0 + 26] = 1
    valid = np.ones((size, size), bool)
    objs, _ = vectorise_tile(probs, cores, valid, tiles[0], classes=("railcar",), semantic_classes=SEMANTIC_CLASSES,
                             object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    assert len(objs) == 1
    assert objs[0].polygon.centroid.x == pytest.approx(234, abs=0.5)


def test_cars_cut_from_one_blob_each_get_their_own_confidence():
    """Two coupled cars the model drew as one 32 m blob with no seed are cut in two (whole_cars);
    each car's confidence is the mean railcar score of its own half, not the pair's mean."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    probs[0, 132:138, 132:196] = 0.05
    probs[1, 132:138, 132:164] = 0.9  # grid x 100 .. 132: a clear car
    probs[1, 132:138, 164:196] = 0.6  # grid x 132 .. 164: a faint one
    cores = np.zeros((2, size, size), np.float32)
    objs, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("railcar",),
                             semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    assert len(objs) == 2
    by_x = sorted(objs, key=lambda o: o.polygon.centroid.x)
    assert [o.polygon.centroid.x for o in by_x] == [pytest.approx(116, abs=1), pytest.approx(148, abs=1)]
    assert [o.confidence for o in by_x] == [pytest.approx(0.9, abs=1e-6), pytest.approx(0.6, abs=1e-6)]


def test_outline_pinched_at_a_corner_is_one_valid_polygon():
    """Cargo pixels joined only corner to corner (8-connected) trace an outline that touches itself;
    it must come out as one valid polygon, not be dropped or split."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    for r0, c0 in ((100, 100), (106, 106)):  # two 6 x 6 px blocks meeting at one corner
        probs[0, r0 : r0 + 6, c0 : c0 + 6] = 0
        probs[2, r0 : r0 + 6, c0 : c0 + 6] = 1
    cores = np.zeros((2, size, size), np.float32)
    objs, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("tarped_cargo",),
                             semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    assert len(objs) == 1
    polygon = objs[0].polygon
    assert polygon.geom_type == "Polygon" and polygon.is_valid
    assert polygon.area == pytest.approx(72, rel=0.1)


def test_outlines_keep_each_labels_largest_part_without_holes():
    """An object's pixels in two pieces (a seed's reach cut it) come out as its larger piece, and a
    tarp around a hole as its outer outline; labels in the order GDAL's polygoniser first meets them."""
    from rasterio import features

    from kernels.vectorise import _outer_rings, _tidy

    owned = np.zeros((40, 60), dtype=np.int32)
    owned[2:6, 2:6] = 2  # label 2's small piece, met first
    owned[20:32, 30:42] = 2  # ... and its large one
    owned[10:22, 5:17] = 1
    owned[14:18, 9:13] = 0  # a hole in label 1
    labels, rings = _outer_rings(features.shapes(owned, mask=owned > 0, connectivity=8))
    assert labels == [2, 1]
    outlines = _tidy(rings)
    assert [o.geom_type for o in outlines] == ["Polygon", "Polygon"] and all(o.is_valid for o in outlines)
    assert outlines[0].area == pytest.approx(144) and outlines[0].bounds == (30.0, 20.0, 42.0, 32.0)
    assert outlines[1].area == pytest.approx(144) and not outlines[1].interiors
    assert len(_tidy([])) == 0


def test_normalise_matches_the_formula():
    batch = torch.arange(0, 256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)
    out = normalise(batch, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert out.dtype == torch.float32
    assert out[0, 0, 0, 0].item() == pytest.approx(-2.0) and out[0, 0, -1, -1].item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        normalise(batch.float(), (0.5,) * 3, (0.25,) * 3)


def test_the_plain_model_input_is_the_normalised_batch_channels_last():
    """What model_input gives on a CPU, and the baseline bench.kernels times the Triton kernel against."""
    from kernels.normalise import model_input, normalise_channels_last

    batch = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = normalise_channels_last(batch, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.bfloat16)
    assert plain.dtype == torch.bfloat16 and plain.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, normalise(batch, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)).to(torch.bfloat16))
    assert torch.equal(model_input(batch, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.bfloat16), plain)


def test_no_detection_right_at_a_nodata_edge():
    from kernels.vectorise import trusted_area

    valid = np.ones((20, 20), bool)
    assert trusted_area(valid) is valid
    valid[:, :5] = False
    trusted = trusted_area(valid)
    assert not trusted[:, :7].any() and trusted[:, 7:].all()


def test_oriented_rectangles_match_the_traced_outline():
    """Railcar rectangles come from row extremes in one vectorised call; they must equal the
    smallest rotated rectangle of the traced pixel outline."""
    from affine import Affine
    from rasterio import features
    from shapely.geometry import shape
    from skimage.draw import polygon as fill

    from kernels.instances import labelled_pixels
    from kernels.tiling import plan_tiles
    from kernels.vectorise import _oriented_rectangles

    tile = plan_tiles(600, 600, 512, 32)[0]
    rng = np.random.default_rng(1)
    owned = np.zeros((tile.size, tile.size), np.int32)
    for k in range(1, 25):
        cx, cy = rng.uniform(60, 500, 2)
        a, half_l, half_w = rng.uniform(0, np.pi), rng.uniform(10, 22), rng.uniform(2.5, 3.5)
        c, s = np.cos(a), np.sin(a)
        pts = np.array([(cx + c * dx - s * dy, cy + s * dx + c * dy)
                        for dx, dy in [(-half_l, -half_w), (half_l, -half_w), (half_l, half_w), (-half_l, half_w)]])
        rr, cc = fill(pts[:, 1], pts[:, 0], owned.shape)
        owned[rr, cc] = k
    got = dict(zip(*_oriented_rectangles(*labelled_pixels(owned), tile), strict=True))
    parts = list(features.shapes(owned, mask=owned > 0, connectivity=8, transform=Affine.translation(tile.col, tile.row)))
    single = [(g, int(v)) for g, v in parts if sum(int(w) == int(v) for _, w in parts) == 1]
    assert len(single) >= 15
    for geom, label in single:
        want = shape(geom).minimum_rotated_rectangle
        assert want.symmetric_difference(got[label]).area < 1e-6 * want.area


def test_winning_class_is_argmax_over_classes_first_on_ties():
    from kernels.vectorise import winning_class

    rng = np.random.default_rng(3)
    probs = rng.integers(0, 4, size=(4, 40, 50)).astype(np.float32)  # many ties
    got = winning_class(probs)
    assert got.dtype == np.uint8
    assert np.array_equal(got, np.argmax(probs, axis=0))


def test_cars_held_to_real_lengths():
    """A 40 m rectangle is two coupled cars: cut into two of 20 m. A 7 m one is a fragment: dropped.
    A 15 m one stays as it is, and so does a 40 m one 8 m wide (two rows of cars, or no car)."""
    from shapely.geometry import box

    from kernels.vectorise import whole_cars

    px = 0.5
    rects = np.array([box(0, 0, 6, 80), box(20, 0, 26, 14), box(40, 0, 46, 30), box(60, 0, 76, 80)], dtype=object)
    labels, cars = whole_cars(np.array([1, 2, 3, 4]), rects, px)
    assert labels.tolist() == [1, 1, 3, 4]
    halves = sorted(cars[:2], key=lambda r: r.bounds[1])
    assert [h.bounds for h in halves] == [pytest.approx((0, 0, 6, 40)), pytest.approx((0, 40, 6, 80))]
    assert cars[2].equals(rects[2]) and cars[3].equals(rects[3])


def test_coupled_cars_are_cut_at_the_gap_the_core_map_shows():
    """A 40 m rectangle (80 px at 0.5 m) of two cars whose core map dips 5-7 px before half way is
    cut in the dip, not in the middle; a dip further than GAP_SEARCH_M from the middle is not
    followed, and a map with no dip near the middle leaves the cut there. The map's pixel (0, 0)
    sits at the rectangle's grid origin (10, 20)."""
    from shapely.geometry import box

    from kernels.vectorise import GAP_SEARCH_M, whole_cars

    px = 0.5
    rect = np.array([box(10, 20, 16, 100)], dtype=object)
    centres = np.ones((90, 10), dtype=np.float32)
    centres[33:35, :] = 0.0  # rows 33-34 of the map are grid y 53-54: the gap
    _, cars = whole_cars(np.array([1]), rect, px, centres=centres, origin=(10, 20))
    ends = sorted(c.bounds[3] for c in cars)
    assert 53.0 <= ends[0] <= 55.0 and ends[1] == pytest.approx(100.0)  # the cut lies in the gap
    far = np.ones((90, 10), dtype=np.float32)
    far[5:7, :] = 0.0  # 35 px (17.5 m) before half way: beyond the search
    assert GAP_SEARCH_M < 17.5
    _, cars = whole_cars(np.array([1]), rect, px, centres=far, origin=(10, 20))
    assert sorted(c.bounds[3] for c in cars) == [pytest.approx(60.0), pytest.approx(100.0)]


def test_railcar_rectangles_narrowed_about_their_centre_line():
    """A 6 px wide box loses 2 px across (1 each side), keeps its length and centre line; a 5 px one
    stops at the 4 px floor; a tilted one narrows across its own short side."""
    from shapely.geometry import box

    from kernels.vectorise import narrowed

    tilted = shapely.affinity.rotate(box(0, 0, 28, 6), 30, origin=(0, 0))
    rects = np.array([box(0, 0, 6, 28), box(20, 0, 25, 28), tilted], dtype=object)
    out = narrowed(rects, 2.0, 4.0)
    assert out[0].bounds == pytest.approx((1, 0, 5, 28))
    assert out[1].bounds == pytest.approx((20.5, 0, 24.5, 28))
    attrs = oriented_box_attributes(out, 1.0)
    assert attrs["length_m"].tolist() == [28.0, 28.0, 28.0]
    assert attrs["width_m"].tolist() == [4.0, 4.0, 4.0]
    assert out[2].centroid.distance(tilted.centroid) < 1e-9
    assert rects[0].bounds == (0, 0, 6, 28)  # the input is not changed


def test_square_dilation_is_a_maximum_filter():
    from scipy import ndimage

    from kernels.vectorise import square_dilation

    rng = np.random.default_rng(5)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 50)), int(rng.integers(1, 50)))) < rng.uniform(0, 0.1)
        radius = int(rng.integers(0, 20))  # past the mask's own size too
        want = ndimage.maximum_filter(mask.view(np.uint8), size=2 * radius + 1).view(bool)
        assert np.array_equal(square_dilation(mask, radius), want), (mask.shape, radius)


def test_track_runs_on_under_the_cars_standing_on_it():
    """The model calls a car's pixels railcar, not track: the centre line must still run through
    the car, as one line, not stop at each end of it."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    probs[0, 120:123, 20:300] = 0
    probs[3, 120:123, 20:300] = 1  # a track band 3 px wide along row 121
    probs[3, 118:125, 120:150] = 0
    probs[1, 118:125, 120:150] = 1  # a car 7 px wide standing on it
    probs[0, 200:207, 60:90] = 0
    probs[1, 200:207, 60:90] = 1  # a car with no track in sight: no line
    cores = np.zeros((2, size, size), np.float32)
    valid = np.ones((size, size), bool)
    _, lines = vectorise_tile(probs, cores, valid, tile, classes=("track",), semantic_classes=SEMANTIC_CLASSES,
                              object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    joined = join_tracks([pl.line for pl in lines])
    assert len(joined) == 1  # and none along the car standing alone
    line = joined[0]
    xs = np.asarray(line.coords)[:, 0]
    # Grid coordinates: the read window starts a halo (32 px) before the core.
    assert xs.min() <= 1 and xs.max() >= 255  # across the whole core, through the car
    assert all(abs(y - (121.5 - 32)) <= 1.0 for y in np.asarray(line.coords)[:, 1])
    assert lines[0].confidence == pytest.approx(1.0)  # track, or railcar where the line runs under a car


def test_cars_count_as_standing_on_track_as_the_grown_band_joins_them():
    """``through_cars`` against its definition: the parts of track, cars and the ground within
    reach of track, joined; a car pixel counts where its part holds track. Random masks, cars in
    chains and a car just inside and just outside reach among them."""
    from scipy import ndimage

    from kernels.vectorise import TRACK_REACH_PX, square_dilation, through_cars

    def by_definition(track, railcar):
        reach = track | railcar | square_dilation(track, TRACK_REACH_PX)
        parts, n = ndimage.label(reach, structure=np.ones((3, 3), dtype=bool))
        on_track = np.zeros(n + 1, dtype=bool)
        on_track[parts[track]] = True
        return (track | railcar) & on_track[parts]

    rng = np.random.default_rng(11)
    for _ in range(60):
        shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        track = rng.random(shape) < rng.uniform(0, 0.01)
        railcar = ndimage.binary_dilation(rng.random(shape) < rng.uniform(0, 0.03), iterations=int(rng.integers(0, 3)))
        assert np.array_equal(through_cars(track, railcar), by_definition(track, railcar))
    track = np.zeros((40, 60), dtype=bool)
    track[20, 5:10] = True
    railcar = np.zeros_like(track)
    railcar[10:30, 18] = True  # 9 px beyond the track's end: touches the ground within reach (8 px)
    railcar[10:30, 30] = True  # 21 px beyond: stands on no track...
    assert through_cars(track, railcar)[10:30, 18].all() and not through_cars(track, railcar)[10:30, 30].any()
    railcar[10, 19:30] = True  # ...until car pixels join it to one that does
    assert through_cars(track, railcar)[10:30, 30].all()
    assert np.array_equal(through_cars(track, railcar), by_definition(track, railcar))
    assert np.array_equal(through_cars(track, np.zeros_like(track)), track)


def test_each_track_line_scores_the_pixels_along_it_not_the_whole_tile():
    """A faint line (a field's edge the model barely calls track) must not borrow the confidence of
    a clear track in the same tile: each line's confidence is the mean track score along it."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    probs[0, 80:83, :] = 0
    probs[3, 80:83, :] = 0.9  # clear track along row 81
    probs[0, 200:203, :] = 0.45
    probs[3, 200:203, :] = 0.55  # faint track along row 201
    cores = np.zeros((2, size, size), np.float32)
    _, lines = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("track",),
                              semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    by_row = {int(np.mean(np.asarray(pl.line.coords)[:, 1])): pl.confidence for pl in lines}  # centres at y + 0.5
    assert by_row == {81 - 32: pytest.approx(0.9), 201 - 32: pytest.approx(0.55)}


def test_each_object_carries_the_mean_colour_of_its_own_pixels():
    """Two coupled cars the model drew as one blob, one light blue and one reddish-brown, with a dark
    shadow pixel row along each long edge of the blob: each car's colour is its own roof's, the
    shadow left out (only a car's inner part counts); a tarp's colour is the mean over it."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    probs[0, 130:140, 132:196] = 0.05
    probs[1, 130:140, 132:196] = 0.9  # one 32 m blob: two 16 m cars (whole_cars cuts it)
    probs[0, 60:70, 60:70] = 0
    probs[2, 60:70, 60:70] = 1  # a 5 m tarp
    cores = np.zeros((2, size, size), np.float32)
    rgb = np.zeros((3, size, size), np.uint8)
    rgb[:, 130:140, 132:164] = np.array([150, 190, 230], np.uint8)[:, None, None]
    rgb[:, 130:140, 164:196] = np.array([120, 60, 40], np.uint8)[:, None, None]
    rgb[:, (130, 139), 132:196] = 10  # the edges: shadow and ballast
    rgb[:, 60:65, 60:70] = np.array([0, 100, 0], np.uint8)[:, None, None]
    rgb[:, 65:70, 60:70] = np.array([0, 200, 0], np.uint8)[:, None, None]
    objs, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("railcar", "tarped_cargo"),
                             semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5,
                             rgb=rgb)
    cars = sorted((o for o in objs if o.cls == "railcar"), key=lambda o: o.polygon.centroid.x)
    assert [o.colour for o in cars] == [(150, 190, 230), (120, 60, 40)]
    assert [o.colour for o in objs if o.cls == "tarped_cargo"] == [(0, 150, 0)]
    unseen, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("railcar",),
                               semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5)
    assert [o.colour for o in unseen] == [None, None]  # no pixels given: no colour


def test_a_fragment_too_short_for_a_car_leaves_no_object_and_no_error_with_colours():
    """whole_cars drops a railcar blob shorter than any car: its pixels then belong to no rectangle."""
    tile = plan_tiles(256, 256, 256, 32)[0]
    size = tile.size
    probs = np.zeros((4, size, size), np.float32)
    probs[0] = 1
    probs[0, 130:140, 132:144] = 0
    probs[1, 130:140, 132:144] = 1  # 6 m long: a fragment
    cores = np.zeros((2, size, size), np.float32)
    rgb = np.full((3, size, size), 90, np.uint8)
    objs, _ = vectorise_tile(probs, cores, np.ones((size, size), bool), tile, classes=("railcar",),
                             semantic_classes=SEMANTIC_CLASSES, object_classes=OBJECT_CLASSES, pixel_size_m=0.5,
                             rgb=rgb)
    assert objs == []


def test_a_track_runs_on_straight_through_a_switch_and_the_branch_starts_there():
    """A switch: the track's piece up to it, its piece on beyond, and a branch leaving at about 8
    degrees, their ends a pixel or so apart (the skeleton's junction). The track is one line through
    the switch; the branch is a line of its own that starts on it."""
    trunk = LineString([(0, 0), (100, 0)])
    beyond = LineString([(101, 0.5), (200, 0)])
    branch = LineString([(100.5, 1.0), (200, 15)])
    joined = join_tracks([trunk, beyond, branch])
    assert len(joined) == 2
    through, spur = sorted(joined, key=lambda line: -abs(line.coords[-1][1] - line.coords[0][1]))[::-1]
    assert through.length == pytest.approx(200, abs=1.5) and {round(p.x) for p in through.boundary.geoms} == {0, 200}
    assert spur.distance(through) == pytest.approx(0.0, abs=1e-9)  # it touches the line it leaves
    # A junction whose ends all turn sharply (a Y) joins none of them, but they still meet.
    wye = join_tracks([LineString([(0, 0), (50, 0)]), LineString([(50.5, 0.5), (80, 50)]),
                       LineString([(50.5, -0.5), (80, -50)])])
    assert len(wye) == 3 and shapely.intersects(wye[0], wye[1]) and shapely.intersects(wye[0], wye[2])


def _junctions_one_by_one(ends: np.ndarray, inward: np.ndarray, snap_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The junction rule applied junction by junction, as plainly as it reads: the reference for
    ``track_join._snapped_ends``, which does every junction at once."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from kernels.track_join import THROUGH_MAX_DEG

    pairs = cKDTree(ends).query_pairs(snap_px, output_type="ndarray")
    pairs = pairs[pairs[:, 0] // 2 != pairs[:, 1] // 2]
    moved, node = ends.copy(), np.arange(len(ends))
    graph = coo_array((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(ends), len(ends)))
    _, cluster = connected_components(graph, directed=False)
    for c in np.unique(cluster[np.unique(pairs)]).tolist():
        group = np.flatnonzero(cluster == c)
        if len(group) == 2:  # two ends alone (a tile boundary) are joined whatever their directions
            a, b = group
            moved[a] = moved[b] = (ends[a] + ends[b]) / 2.0
            node[b] = node[a]
            continue
        candidates = [(float(np.degrees(np.arccos(np.clip(-inward[a] @ inward[b], -1.0, 1.0)))), k, a, b)
                      for k, (a, b) in enumerate((a, b) for i, a in enumerate(group) for b in group[i + 1:])
                      if a // 2 != b // 2]
        joints, used = [], set()
        for bend, _, a, b in sorted(candidates):
            if bend <= THROUGH_MAX_DEG and a not in used and b not in used:
                used |= {a, b}
                joints.append((a, b))
        for a, b in joints:
            moved[a] = moved[b] = (ends[a] + ends[b]) / 2.0
            node[b] = node[a]
        rest = [e for e in group if e not in used]
        if rest:
            moved[rest] = moved[joints[0][0]] if joints else ends[group].mean(axis=0)
    return moved, node


def test_every_junction_is_joined_as_the_rule_reads_taken_one_by_one():
    """Hundreds of junctions of two to five piece ends, in random directions (so some have no
    straight pair, some one, some two), all done at once: the same ends joined and moved, to the
    last bit, as the rule applied junction by junction."""
    from kernels.track_join import _snapped_ends

    rng = np.random.default_rng(5)
    centres = rng.uniform(0, 5000, (400, 2))
    per = rng.integers(2, 6, len(centres))
    ends = np.repeat(centres, per, axis=0) + rng.uniform(-0.7, 0.7, (per.sum(), 2))
    ends = ends[rng.permutation(len(ends))][: len(ends) // 2 * 2]  # piece k: ends 2k and 2k + 1
    angle = rng.uniform(0, 2 * np.pi, len(ends))
    inward = np.column_stack([np.cos(angle), np.sin(angle)])
    moved, node = _snapped_ends(ends, inward, 2.5)
    want_moved, want_node = _junctions_one_by_one(ends, inward, 2.5)
    assert np.array_equal(node, want_node) and np.array_equal(moved, want_moved)
    assert (node != np.arange(len(ends))).sum() > 100  # many ends were joined
