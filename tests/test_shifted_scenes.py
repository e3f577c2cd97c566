"""Shifted copies of an evaluation set: the image changes as named, grid, mask and truth do not."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from models.shifted_scenes import SHIFTS, main, shift_image
from tests.scenes import write


@pytest.fixture
def eval_set(tmp_path):
    src = tmp_path / "set"
    src.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(20, 230, (3, 64, 80)).astype(np.uint8)
    mask = np.full((64, 80), 255, dtype=np.uint8)
    mask[:, :12] = 0  # a no-data edge
    write(src / "scene_0000.tif", image, mask=mask)
    (src / "scene_0000.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    write(src / "scene_0000.labels.tif", np.zeros((1, 64, 80), dtype=np.uint8))
    return src, image, mask


@pytest.mark.parametrize("name", SHIFTS)
def test_every_shift_changes_the_image_and_keeps_grid_mask_and_truth(eval_set, tmp_path, name):
    src, image, mask = eval_set
    dst = tmp_path / name
    assert main([str(src), str(dst), "--shift", name]) == 0
    with rasterio.open(src / "scene_0000.tif") as a, rasterio.open(dst / "scene_0000.tif") as b:
        assert (a.transform, a.crs, a.shape) == (b.transform, b.crs, b.shape)
        assert (b.dataset_mask() == mask).all()
        out = b.read()
    valid = mask > 0
    assert not (out[:, valid] == image[:, valid]).all()
    assert (out[:, ~valid] == image[:, ~valid]).all()
    assert (dst / "scene_0000.geojson").read_bytes() == (src / "scene_0000.geojson").read_bytes()
    assert (dst / "scene_0000.labels.tif").read_bytes() == (src / "scene_0000.labels.tif").read_bytes()


def test_named_shifts_do_what_they_say():
    image = np.random.default_rng(1).integers(0, 256, (3, 16, 16)).astype(np.uint8)
    assert (shift_image(image, "bgr") == image[::-1]).all()
    grey = shift_image(image, "grey")
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    assert int(shift_image(image, "cool")[2].sum()) != int(image[2].sum())
    flat = np.full((3, 8, 8), 90, dtype=np.uint8)  # a grey: turning hues leaves it grey
    assert np.abs(shift_image(flat, "hue60").astype(int) - 90).max() <= 1
    assert (shift_image(image, "noise", seed=3) == shift_image(image, "noise", seed=3)).all()


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out"), "--shift", "grey"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "out"), "--shift", "sepia"])
    assert exc.value.code == 2
