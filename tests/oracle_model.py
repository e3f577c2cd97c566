"""A test-only model with exactly known answers, so pipeline tests do not depend on training.

Pure red pixels are railcars, pure blue tarped cargo, pure green track; cores are the class masks
eroded by 2 pixels (a min-pool), as the real model's core channels are shrunk footprints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.interface import ModelMeta

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
COLOURS = {"railcar": (255, 0, 0), "tarped_cargo": (0, 0, 255), "track": (0, 255, 0)}


class ColourOracle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.meta = ModelMeta(name="colour-oracle", version="test", arch="oracle", mean=MEAN, std=STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x.float() * 0.5 + 0.5) * 255.0
        masks = []
        for colour in COLOURS.values():
            target = torch.tensor(colour, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            masks.append(((rgb - target).abs().amax(dim=1, keepdim=True) < 40).float())
        car, cargo, track = masks
        background = 1.0 - torch.clamp(car + cargo + track, 0, 1)
        cores = [-F.max_pool2d(-m, kernel_size=5, stride=1, padding=2) for m in (car, cargo)]
        logits = torch.cat([background, car, cargo, track, *cores], dim=1)
        return (logits * 2.0 - 1.0) * 20.0


def build() -> ColourOracle:
    return ColourOracle()


def build_width_trimmed() -> ColourOracle:
    """The oracle with weights metadata asking for railcar rectangles 0.5 m narrower."""
    model = ColourOracle()
    model.meta.extra["railcar_width_trim_m"] = 0.5
    return model


def build_small_tiles() -> ColourOracle:
    """The oracle with weights metadata naming its own tile size (256 px), as the shipped weights do."""
    model = ColourOracle()
    model.meta.extra["tile_px"] = 256
    return model


def build_grey_balanced() -> ColourOracle:
    """The oracle with weights metadata asking for scenes balanced to grey (equal band means)."""
    model = ColourOracle()
    model.meta.extra["colour_balance"] = {"low": [1.0, 1.0, 1.0], "high": [1.0, 1.0, 1.0]}
    return model


def build_view_floors() -> ColourOracle:
    """The oracle with one-view floors no feature reaches (its confidences are 1.0) and reachable
    floors for two test-time views, as ``railsight floors --tta 2 --write`` records them."""
    model = ColourOracle()
    model.meta.extra["min_confidence"] = {"tarped_cargo": 1.1, "track": 1.1}
    model.meta.extra["min_confidence_tta"] = {"2": {"tarped_cargo": 0.5, "track": 0.6}}
    return model


def build_contrast_doubled() -> ColourOracle:
    """The oracle with a least brightness spread no scene reaches, so every scene is read with its
    contrast raised by the most allowed (``service.colour_balance.MAX_CONTRAST``, x2) about its band
    means."""
    model = ColourOracle()
    model.meta.extra["min_brightness_spread"] = 1000.0
    return model
