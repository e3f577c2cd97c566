"""Training samples: seeds kept apart from held-out scenes, crops and augmentation that keep pixels
and labels together, synthetic scenes on the model grid, a deterministic stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.dataset import (
    IGNORE,
    TRAIN_SEED_MIN,
    CropStream,
    GridSample,
    augment,
    fixed_scenes,
    random_crop,
    synthetic_sample,
    train_scene_seed,
)


def test_training_seeds_never_meet_held_out_seeds():
    from models.synth import scene_seed

    train = {train_scene_seed(s, i) for s in range(3) for i in range(200)}
    assert len(train) == 600 and min(train) >= TRAIN_SEED_MIN
    held_out = {scene_seed(s, i) for s in range(3) for i in range(200)}
    assert max(held_out) < TRAIN_SEED_MIN  # `railsight synth` seeds stay below 2**63
    assert train_scene_seed(7, 3) == train_scene_seed(7, 3) != train_scene_seed(8, 3)


def coded_sample(h=90, w=120) -> GridSample:
    """Pixels that spell out their own labels, so any misalignment shows."""
    rng = np.random.default_rng(0)
    semantic = rng.integers(0, 4, (h, w)).astype(np.uint8)
    cores = rng.random((2, h, w)) < 0.3
    valid = np.ones((h, w), dtype=bool)
    valid[:, :10] = False
    semantic[~valid] = IGNORE
    image = np.stack([np.where(valid, semantic * 60, 0), cores[0] * 200, cores[1] * 200]).astype(np.uint8)
    return GridSample(image, valid, semantic, cores, np.ones(4, dtype=bool))


def test_crops_and_augmentation_keep_pixels_and_labels_together():
    sample = coded_sample()
    rng = np.random.default_rng(1)
    for _ in range(20):
        crop = augment(random_crop(sample, rng, 64), rng, colour=False)
        ok = crop["valid"]
        assert ok.mean() >= 0.25
        assert (crop["image"][0][ok] == crop["semantic"][ok] * 60).all()
        assert (crop["semantic"][~ok] == IGNORE).all()
        assert ((crop["image"][1] == 200) == crop["cores"][0]).all()
        assert ((crop["image"][2] == 200) == crop["cores"][1]).all()


def test_crop_larger_than_scene_is_padded_as_no_data():
    crop = random_crop(coded_sample(40, 50), np.random.default_rng(0), 64)
    assert crop["image"].shape == (3, 64, 64) and crop["valid"].sum() == 40 * 40
    assert (crop["semantic"][~crop["valid"]] == IGNORE).all()


def test_colour_jitter_keeps_no_data_black_and_uint8():
    crop = augment(random_crop(coded_sample(), np.random.default_rng(2), 64), np.random.default_rng(3))
    assert crop["image"].dtype == np.uint8 and (crop["image"][:, ~crop["valid"]] == 0).all()


def test_synthetic_sample_is_on_the_model_grid():
    g = synthetic_sample(train_scene_seed(0, 0), size_px=160, pixel_size_m=0.8, min_railcars=1)
    assert g.shape == (256, 256)  # 160 px of 0.8 m on a 0.5 m grid
    assert g.image.shape == (3, 256, 256) and g.image.dtype == np.uint8
    assert (g.semantic == 1).any() and g.cores[0].any()
    assert ((g.semantic == IGNORE) == ~g.valid).all()
    assert (g.cores[0] <= (g.semantic == 1)).all()  # railcar cores lie inside railcar pixels


def test_crop_stream_batches_follow_the_schedule_across_loader_workers():
    # Batch b is drawn at schedule[b % 2] whichever of the two worker processes draws it, in the
    # order a DataLoader without batching hands batches out.
    stream = CropStream(fixed_scenes([coded_sample()]), seed=3, schedule=((64, 3), (96, 1)), crops_per_scene=4)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    shapes = [tuple(b["image"].shape) for b in itertools.islice(iter(loader), 6)]
    assert shapes == [(3, 3, 64, 64), (1, 3, 96, 96)] * 3
    first = next(iter(loader))
    assert first["semantic"].shape == (3, 64, 64) and first["cores"].shape[:2] == (3, 2)


def test_crop_stream_is_deterministic():
    scenes = fixed_scenes([coded_sample()])

    def first(n):
        stream = CropStream(scenes, seed=5, schedule=((64, 1),), crops_per_scene=3, pool=2)
        return list(itertools.islice(iter(stream), n))

    a, b = first(5), first(5)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)
    with pytest.raises(ValueError):
        CropStream(scenes, seed=0, schedule=((70, 4),))


def test_wide_shift_is_seeded_uint8_and_wider_than_the_mild_jitter():
    from models.photometric import wide_shift

    image = coded_sample().image
    first = wide_shift(image, np.random.default_rng(5))
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert (first == wide_shift(image, np.random.default_rng(5))).all()
    assert not (first == image).all()
    # Brightness over many draws: the mild jitter keeps a crop's mean within about +-25 %; the wide
    # shift (contrast 0.5-1.7, gamma 0.6-1.7, brightness +-0.1) must reach well beyond that.
    rng = np.random.default_rng(6)
    means = [wide_shift(image, rng).mean() / image.mean() for _ in range(60)]
    assert min(means) < 0.75 and max(means) > 1.3


def test_shift_share_shifts_that_share_and_keeps_no_data_black():
    sample = coded_sample()
    rng = np.random.default_rng(7)
    shifted = 0
    for _ in range(40):
        crop = random_crop(sample, rng, 64)
        plain = augment(crop, np.random.default_rng(8), colour=False)
        out = augment(crop, np.random.default_rng(8), shift_share=1.0)
        assert out["image"].dtype == np.uint8 and (out["image"][:, ~out["valid"]] == 0).all()
        assert (out["semantic"] == plain["semantic"]).all() and (out["cores"] == plain["cores"]).all()
        shifted += not (out["image"] == plain["image"]).all()
    assert shifted >= 38
    crop = random_crop(sample, rng, 64)
    assert (augment(crop, np.random.default_rng(9), shift_share=0.0)["image"]
            == augment(crop, np.random.default_rng(9))["image"]).all()
