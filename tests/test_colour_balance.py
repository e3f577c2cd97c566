"""Per-scene colour balance and contrast: gains that undo a colour cast and a scale that undoes a
loss of contrast, applied as scenes are read, and a cast or flattened scene detected like the scene
without it when the weights name a range."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from models.spec import ModelSpec
from service.colour_balance import (
    MAX_CONTRAST,
    MAX_GAIN,
    MIN_GAIN,
    apply_tone,
    balance_gains,
    band_balance,
    brightness_spread,
    contrast_step,
)
from service.pipeline import DetectOptions, detect_scene
from service.rasters import inspect_scene, open_scene
from tests import scenes

COOL = np.array([0.8, 0.95, 1.2])


def cast(image: np.ndarray, gains=COOL) -> np.ndarray:
    return np.clip(np.rint(image * np.asarray(gains)[:, None, None]), 0, 255).astype(np.uint8)


def undoes_the_cast(gains) -> bool:
    """Gains keep the scene's brightness, so they undo COOL up to one common factor."""
    product = np.asarray(gains) * COOL
    return bool(np.allclose(product, product.mean(), rtol=0.01))


def test_gains_undo_a_per_band_cast_and_ignore_invalid_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(40, 200, (3, 64, 64)).astype(np.uint8)  # no value the cast would clip
    valid = np.ones((64, 64), dtype=bool)
    valid[:, :16] = False
    shifted = cast(image)
    shifted[:, ~valid] = 255  # whatever lies under no-data must not count
    target = tuple(band_balance(image, valid))
    gains = balance_gains(shifted, valid, (target, target))
    assert gains is not None and undoes_the_cast(gains)
    restored = apply_tone(shifted.copy(), gains)
    brightness = shifted[:, valid].mean() / image[:, valid].mean()  # kept: the cast scene's
    assert np.abs(restored[:, valid] - image[:, valid] * brightness).max() <= 2
    assert band_balance(image, valid).sum() == pytest.approx(3.0)


def test_gains_are_held_to_a_range():
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    image[0], image[1] = 100, 120  # no blue at all: not a cast a gain could undo
    gains = balance_gains(image, np.ones((8, 8), dtype=bool), ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)))
    assert gains is not None and gains[2] == MAX_GAIN and MIN_GAIN <= gains[0] <= MAX_GAIN


def test_a_scene_inside_the_range_is_left_alone_and_one_outside_goes_to_its_edge():
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    image[0], image[1], image[2] = 110, 100, 90  # balance 1.1, 1.0, 0.9
    valid = np.ones((8, 8), dtype=bool)
    assert balance_gains(image, valid, ((1.0, 0.95, 0.85), (1.15, 1.05, 0.95))) is None
    gains = balance_gains(image, valid, ((1.0, 0.95, 0.95), (1.05, 1.05, 1.05)))  # red high, blue low
    balanced = band_balance(apply_tone(image.copy(), gains).astype(float), valid)
    assert balanced[0] < 1.07 and balanced[2] > 0.93 and balanced[0] / balanced[2] == pytest.approx(1.05 / 0.95, rel=0.02)


def test_applied_gains_are_the_rounded_and_clipped_products():
    image = np.arange(256, dtype=np.uint8).repeat(3).reshape(256, 3).T.reshape(3, 16, 16).copy()
    gains = (0.7, 1.0, 1.9)
    assert np.array_equal(apply_tone(image.copy(), gains), cast(image, gains))


def test_reads_give_the_scene_the_balance_asked_for_and_keep_no_data_black(tmp_path):
    image = scenes.blank(96, 96, value=120)
    image[:, 30:60, 30:60] = np.array([200, 90, 60], dtype=np.uint8)[:, None, None]
    mask = np.ones((96, 96), dtype=bool)
    mask[:20, :20] = False
    path = scenes.write(tmp_path / "cool.tif", cast(image), mask=mask)
    plain = inspect_scene(path, model_pixel_size_m=0.5)
    target = tuple(band_balance(image, mask))
    balanced = inspect_scene(path, model_pixel_size_m=0.5, colour_balance=(target, target))
    assert plain.gains is None and undoes_the_cast(balanced.gains)
    with open_scene(plain) as reader:
        raw, valid = reader.read(0, 0, 96, 96)
    with open_scene(balanced) as reader:
        rgb, valid_b = reader.read(-8, -8, 112, 112)  # past the edge: padding
    assert np.array_equal(raw[:, valid], cast(image)[:, mask])
    assert np.array_equal(valid_b[8:-8, 8:-8], mask) and not valid_b[:8].any()
    brightness = cast(image)[:, mask].mean() / image[:, mask].mean()
    assert np.abs(rgb[:, 8:-8, 8:-8][:, mask] - image[:, mask] * brightness).max() <= 2
    assert not rgb[:, 8:-8, 8:-8][:, ~mask].any() and not rgb[:, :8].any()


def test_a_cast_scene_gives_the_cars_of_the_scene_without_it(tmp_path, dask_client):
    image = scenes.blank(320, 320)
    boxes = scenes.train_of_cars(image, 40, 60, 5) + scenes.train_of_cars(image, 40, 200, 4)
    plain_path = scenes.write(tmp_path / "plain.tif", image)
    cool_path = scenes.write(tmp_path / "cool.tif", cast(image))  # red cars 255 -> 204: the oracle's 40 levels off
    oracle = ModelSpec(factory="tests.oracle_model:build")
    balanced = ModelSpec(factory="tests.oracle_model:build_grey_balanced")
    options = DetectOptions(device="cpu")

    def railcars(path, spec):
        fc = detect_scene(path, options, spec, dask_client)
        return fc["summary"]["counts"]["railcar"], fc["summary"]["colour_gains"]

    assert railcars(plain_path, oracle) == (len(boxes), None)
    assert railcars(cool_path, oracle)[0] == 0
    count, gains = railcars(cool_path, balanced)
    assert count == len(boxes) and gains[0] > 1.15 and gains[2] < 0.9


def test_detect_says_when_it_balanced_a_scene(tmp_path, cli_env):
    image = scenes.blank(320, 320)
    boxes = scenes.train_of_cars(image, 40, 60, 5)
    path = scenes.write(tmp_path / "cool.tif", cast(image))
    env = {**cli_env, "RAILSIGHT_MODEL_FACTORY": "tests.oracle_model:build_grey_balanced"}
    proc = subprocess.run([sys.executable, "-m", "service.cli", "detect", str(path), "-o", str(tmp_path / "d.geojson"),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(boxes)} railcar" in proc.stdout and "colour balanced: R x1.2" in proc.stdout
    env["RAILSIGHT_MODEL_FACTORY"] = "tests.oracle_model:build_contrast_doubled"
    path = scenes.write(tmp_path / "flat.tif", flatten(image))
    proc = subprocess.run([sys.executable, "-m", "service.cli", "detect", str(path), "-o", str(tmp_path / "f.geojson"),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(boxes)} railcar" in proc.stdout and "contrast x2.00" in proc.stdout


def flatten(image: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Contrast scaled by ``factor`` about each band's mean (what a hazy or flat sensor does)."""
    means = image.reshape(3, -1).mean(axis=1)[:, None, None]
    return np.clip(np.rint((image - means) * factor + means), 0, 255).astype(np.uint8)


def test_a_scene_flatter_than_the_least_spread_is_raised_to_it_about_its_band_means():
    rng = np.random.default_rng(1)
    image = rng.integers(30, 220, (3, 48, 48)).astype(np.uint8)
    valid = np.ones((48, 48), dtype=bool)
    valid[:8] = False
    image[:, :8] = 255  # under no-data: must not count
    spread = brightness_spread(image, valid)
    assert contrast_step(image, valid, spread) is None and contrast_step(image, valid, spread / 2) is None
    scale, means = contrast_step(image, valid, spread * 1.5)
    assert scale == pytest.approx(1.5) and means == pytest.approx(image[:, valid].mean(axis=1))
    assert contrast_step(image, valid, spread * 5)[0] == MAX_CONTRAST  # held to the most allowed
    out = apply_tone(image.copy(), None, (scale, means))
    assert brightness_spread(out, valid) == pytest.approx(spread * 1.5, rel=0.02)
    assert out[:, valid].mean(axis=1) == pytest.approx(image[:, valid].mean(axis=1), abs=1.0)


def test_tone_tables_are_the_gains_then_the_contrast_rounded_and_clipped():
    image = np.arange(256, dtype=np.uint8).repeat(3).reshape(256, 3).T.reshape(3, 16, 16).copy()
    gains, contrast = (0.9, 1.0, 1.2), (1.7, (100.0, 120.0, 80.0))
    wanted = (image * np.array(gains)[:, None, None] - np.array(contrast[1])[:, None, None]) * 1.7
    wanted = np.clip(np.rint(wanted + np.array(contrast[1])[:, None, None]), 0, 255)
    assert np.array_equal(apply_tone(image.copy(), gains, contrast), wanted)


def test_reads_restore_a_lost_contrast_and_keep_padding_and_no_data_black(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(40, 215, (3, 80, 80)).astype(np.uint8)
    mask = np.ones((80, 80), dtype=bool)
    mask[-16:, -16:] = False
    path = scenes.write(tmp_path / "flat.tif", flatten(image, 0.5), mask=mask)
    spread = brightness_spread(image, mask)
    info = inspect_scene(path, model_pixel_size_m=0.5, min_spread=spread)
    assert info.gains is None and info.contrast[0] == pytest.approx(2.0, rel=0.02)
    with open_scene(info) as reader:
        rgb, valid = reader.read(-8, -8, 96, 96)  # past the edge: padding
    inside = rgb[:, 8:-8, 8:-8]
    assert np.abs(inside[:, mask].astype(int) - image[:, mask]).max() <= 3  # back to the unflattened scene
    assert not inside[:, ~mask].any() and not rgb[:, :8].any() and not valid[:8].any()
    assert inspect_scene(path, model_pixel_size_m=0.5, min_spread=spread / 4).contrast is None  # flat enough


def test_a_flattened_scene_gives_the_cars_of_the_scene_as_it_was(tmp_path, dask_client):
    image = scenes.blank(320, 320)
    boxes = scenes.train_of_cars(image, 40, 60, 5) + scenes.train_of_cars(image, 40, 200, 4)
    flat_path = scenes.write(tmp_path / "flat.tif", flatten(image))  # red cars far from pure red
    options = DetectOptions(device="cpu")

    def railcars(spec):
        fc = detect_scene(flat_path, options, spec, dask_client)
        return fc["summary"]["counts"]["railcar"], fc["summary"]["contrast_scale"]

    assert railcars(ModelSpec(factory="tests.oracle_model:build")) == (0, None)
    assert railcars(ModelSpec(factory="tests.oracle_model:build_contrast_doubled")) == (len(boxes), MAX_CONTRAST)
