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
