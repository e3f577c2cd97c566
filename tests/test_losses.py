"""The training loss: ignored pixels, partial labels, Dice on sparse targets."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import IGNORE, railsight_loss, semantic_loss, soft_dice


def logits_for(probs: list[float], h: int = 2, w: int = 2) -> torch.Tensor:
    """(1, 4, h, w) logits whose softmax is ``probs`` at every pixel."""
    return torch.tensor(probs).log().view(1, 4, 1, 1).expand(1, 4, h, w).clone()


def test_background_pixel_of_an_unknown_class_is_not_punished():
    logits = logits_for([0.1, 0.1, 0.1, 0.7])  # the model says "track"
    target = torch.zeros(1, 2, 2, dtype=torch.long)  # labelled background
    all_known = torch.ones(1, 4, dtype=torch.bool)
    no_tracks = torch.tensor([[True, True, True, False]])
    w = (1.0, 1.0, 1.0, 1.0)
    assert semantic_loss(logits, target, all_known, w).item() == pytest.approx(-math.log(0.1), rel=1e-5)
    assert semantic_loss(logits, target, no_tracks, w).item() == pytest.approx(-math.log(0.8), rel=1e-5)
    # a labelled railcar pixel is punished the same either way
    cars = torch.ones(1, 2, 2, dtype=torch.long)
    assert semantic_loss(logits, cars, no_tracks, w).item() == pytest.approx(-math.log(0.1), rel=1e-5)


def test_ignored_pixels_do_not_count():
    target = torch.tensor([[[0, IGNORE], [0, IGNORE]]])
    known = torch.ones(1, 4, dtype=torch.bool)
    a = logits_for([0.7, 0.1, 0.1, 0.1])
    b = a.clone()
    b[..., 1] = torch.tensor([0.01, 0.97, 0.01, 0.01]).log().view(1, 4, 1)  # change only ignored pixels
    assert semantic_loss(a, target, known).item() == pytest.approx(semantic_loss(b, target, known).item())


def test_soft_dice_pools_the_batch():
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, :2, :2] = 1  # only the first crop holds an object
    mask = torch.ones_like(target, dtype=torch.bool)
    assert soft_dice(target.clone(), target, mask).item() == pytest.approx(0.0, abs=0.03)
    assert soft_dice(torch.zeros_like(target), target, mask).item() == pytest.approx(1.0 - 1.0 / 5.0)
    assert soft_dice(target, target, torch.zeros_like(mask)).item() == 0.0  # nothing counted


def test_total_loss_parts_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 8, 8, requires_grad=True)
    semantic = torch.randint(0, 4, (2, 8, 8))
    semantic[:, 0] = IGNORE
    cores = (torch.rand(2, 2, 8, 8) > 0.8).to(torch.uint8)
    known = torch.ones(2, 4, dtype=torch.bool)
    total, parts = railsight_loss(logits, semantic, cores, known)
    total.backward()
    assert set(parts) == {"semantic", "semantic_dice", "core_bce", "core_dice"}
    assert torch.isfinite(total) and logits.grad is not None
    assert logits.grad[:, :, 0].abs().sum() == 0  # ignored pixels get no gradient


def test_gap_weight_counts_the_rim_of_a_footprint_more():
    # One railcar footprint of 4 pixels, of which 2 are its core: the other 2 are its rim.
    semantic = torch.zeros(1, 2, 4, dtype=torch.long)
    semantic[0, 0] = 1
    cores = torch.zeros(1, 2, 2, 4, dtype=torch.uint8)
    cores[0, 0, 0, :2] = 1
    known = torch.ones(1, 4, dtype=torch.bool)
    logits = torch.zeros(1, 6, 2, 4)
    logits[0, 4, 0, 2:] = 2.0  # the railcar core channel wrongly says "core" on the rim only
    rim_bce = torch.nn.functional.softplus(torch.tensor(2.0)).item()  # -log(1 - sigmoid(2))
    flat_bce = math.log(2.0)  # every other pixel: logit 0 against its target
    pos = 2.0  # models.losses.CORE_POS_WEIGHT: the core pixels count twice
    # 16 pixels over both core channels: 2 rim, 2 core (x pos), 12 others
    plain = (2 * rim_bce + 2 * pos * flat_bce + 12 * flat_bce) / 16
    weighted = (3 * 2 * rim_bce + 2 * pos * flat_bce + 12 * flat_bce) / (16 + 2 * 2)
    _, without = railsight_loss(logits, semantic, cores, known)
    _, with_rim = railsight_loss(logits, semantic, cores, known, gap_weight=2.0)
    assert without["core_bce"] == pytest.approx(plain, rel=1e-5)
    assert with_rim["core_bce"] == pytest.approx(weighted, rel=1e-5)
