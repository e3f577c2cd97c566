"""``SceneReader.read`` against plain rasterio reads of real GeoTIFFs: pixels, validity, and the
padding past a scene's edge, for an all-valid scene (read straight into the output) and for scenes
whose validity comes from a mask or a nodata value."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from service import rasters
from service.rasters import inspect_scene, open_scene, shared_reader
from tests.scenes import UTM, transform_for, write

# Windows in model-grid pixels (col, row, size): inside, across the top-left corner, across the
# bottom-right corner, and wholly outside the scene.
WINDOWS = [(40, 30, 64), (-20, -12, 64), (270, 180, 64), (400, 400, 32)]


def scene(tmp_path, kind: str):
    rng = np.random.default_rng(5)
    image = rng.integers(1, 256, size=(3, 220, 300), dtype=np.uint8)
    if kind == "all valid":
        return write(tmp_path / "s.tif", image)
    valid = np.ones((220, 300), dtype=bool)
    valid[:, :50] = False  # a no-data strip along the west edge
    valid[100:120, 150:200] = False
    if kind == "mask":
        return write(tmp_path / "s.tif", image, mask=valid)
    if kind == "ycbcr jpeg":
        return write_ycbcr_jpeg(tmp_path / "s.tif", image, valid)
    image[:, ~valid] = 0
    return write(tmp_path / "s.tif", image, nodata=0)


def write_ycbcr_jpeg(path, image, valid):
    """The usual orthophoto delivery: JPEG-compressed YCbCr tiles with an internal mask. GDAL hands
    it back as RGB, which the reader must pick and mask as it does a plain RGB file."""
    _, height, width = image.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
               "crs": UTM, "transform": transform_for(UTM, 0.5), "compress": "JPEG", "photometric": "YCBCR",
               "jpeg_quality": 80, "tiled": True, "blockxsize": 128, "blockysize": 128}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    return path


@pytest.mark.parametrize("kind", ["all valid", "mask", "nodata", "ycbcr jpeg"])
def test_reads_match_rasterio_with_padding_past_the_edge(tmp_path, kind):
    path = scene(tmp_path, kind)
    info = inspect_scene(path, model_pixel_size_m=0.5)
    assert not info.resampled
    with rasterio.open(path) as src:
        image = src.read()
        valid = src.dataset_mask() > 0
    with open_scene(info) as reader:
        for col, row, size in WINDOWS:
            rgb, ok = reader.read(col, row, size, size)
            want_rgb = np.zeros((3, size, size), np.uint8)
            want_ok = np.zeros((size, size), bool)
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + size, 220), min(col + size, 300)
            if r1 > r0 and c1 > c0:
                dst = slice(r0 - row, r1 - row), slice(c0 - col, c1 - col)
                want_ok[dst] = valid[r0:r1, c0:c1]
                want_rgb[:, dst[0], dst[1]] = image[:, r0:r1, c0:c1] * valid[r0:r1, c0:c1]
            assert np.array_equal(ok, want_ok), (kind, col, row)
            assert np.array_equal(rgb, want_rgb), (kind, col, row)
    if kind == "all valid":
        assert reader._all_valid
    else:
        assert not reader._all_valid


def test_resampled_reads_keep_the_scene_whole_and_valid(tmp_path):
    """A 0.25 m scene on the 0.5 m model grid: bilinear reads straight into the output window."""
    image = np.full((3, 200, 240), 90, dtype=np.uint8)
    image[1] = 160
    path = write(tmp_path / "fine.tif", image, pixel_size_m=0.25)
    info = inspect_scene(path, model_pixel_size_m=0.5)
    assert info.resampled and (info.grid_width, info.grid_height) == (120, 100)
    with open_scene(info) as reader:
        rgb, ok = reader.read(10, 10, 64, 64)
        edge_rgb, edge_ok = reader.read(80, 60, 64, 64)
    assert ok.all() and (rgb[0] == 90).all() and (rgb[1] == 160).all()
    assert edge_ok[:40, :40].all() and not edge_ok[40:].any() and not edge_ok[:, 40:].any()
    assert (edge_rgb[:, 40:] == 0).all() and (edge_rgb[1, :40, :40] == 160).all()


def test_a_worker_keeps_a_scene_open_between_tasks_until_the_file_changes(tmp_path, monkeypatch):
    """``shared_reader`` hands a thread the same open scene for every task (GDAL's block cache then
    serves the blocks neighbouring tiles share), a new one once the file is rewritten, and keeps at
    most ``KEEP_OPEN`` scenes open."""
    monkeypatch.setattr(rasters, "_kept_open", type(rasters._kept_open)())
    path = scene(tmp_path, "all valid")
    info = inspect_scene(path, model_pixel_size_m=0.5)
    first = shared_reader(info)
    assert shared_reader(info) is first
    with open_scene(info) as fresh:
        for col, row, size in WINDOWS:
            assert all(np.array_equal(a, b) for a, b in zip(first.read(col, row, size, size),
                                                             fresh.read(col, row, size, size), strict=True))
    rewritten = write(tmp_path / "s.tif", np.full((3, 220, 300), 77, dtype=np.uint8))
    again = shared_reader(inspect_scene(rewritten, model_pixel_size_m=0.5))
    assert again is not first
    assert (again.read(0, 0, 32, 32)[0] == 77).all()
    others = [write(tmp_path / f"o{i}.tif", np.full((3, 40, 40), i, dtype=np.uint8)) for i in range(rasters.KEEP_OPEN)]
    for other in others:
        shared_reader(inspect_scene(other, model_pixel_size_m=0.5))
    assert len(rasters._kept_open) == rasters.KEEP_OPEN
    assert again._src.closed  # the least recently used went first
