"""The model interface the pipeline relies on.

A model is a ``torch.nn.Module`` that takes a batch of normalised RGB tiles, ``(B, 3, H, W)`` float
(H and W multiples of 32), and returns one tensor of raw logits ``(B, 6, H, W)``:

    channels 0..3  semantic classes, softmax over them: background, railcar, tarped_cargo, track
    channel  4     railcar *core*: the car footprint shrunk by about 1.5 m at each end and side
    channel  5     tarped-cargo core, the same idea

Why cores: coupled cars stand about 1 m apart, one or two pixels at 0.5 m, so the semantic mask of a
train is one blob. Shrunk cores of neighbouring cars are several pixels apart, so their connected
components are one seed per car; each seed then grows back over its class mask (see
``kernels.instances``). Track pixels are a band about 1.5 m wide around each track's centre line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: the pipeline's client side never does
    import torch

SEMANTIC_CLASSES = ("background", "railcar", "tarped_cargo", "track")
OBJECT_CLASSES = ("railcar", "tarped_cargo")  # classes with a core channel, in channel order
ALL_CLASSES = (*OBJECT_CLASSES, "track")  # what a detection run outputs
OUTPUT_CHANNELS = len(SEMANTIC_CLASSES) + len(OBJECT_CLASSES)
TTA_VIEWS = (1, 2, 4, 8)  # how many flipped views of a tile inference may average (models.inference)
CLASS_INDEX = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}
CORE_CHANNEL = {name: len(SEMANTIC_CLASSES) + i for i, name in enumerate(OBJECT_CLASSES)}

# Ground size the shipped model works at; scenes are resampled to it window by window.
DEFAULT_PIXEL_SIZE_M = 0.5
# Largest object the model must see whole (a 22 m car is 44 px at 0.5 m; cargo clusters more).
MAX_OBJECT_M = 30.0
# The tile core a model runs at when its weights do not name one (``ModelMeta.tile_px``).
DEFAULT_TILE_PX = 512


@dataclass(frozen=True)
class ModelMeta:
    """What travels with the weights."""

    name: str = "railsight-unet"
    version: str = "0.0.0"
    arch: str = "unet"
    arch_args: dict = field(default_factory=dict)
    classes: tuple[str, ...] = SEMANTIC_CLASSES
    pixel_size_m: float = DEFAULT_PIXEL_SIZE_M
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    extra: dict = field(default_factory=dict)

    @property
    def halo_px(self) -> int:
        """Halo in model pixels: half the largest object (an owned object's centroid is in the core, so
        at most half of it reaches past the core), rounded up to a multiple of 16."""
        px = MAX_OBJECT_M / 2 / self.pixel_size_m
        return int(-(-px // 16) * 16)

    @property
    def tile_px(self) -> int:
        """The tile core these weights run at: ``own_tile_px``, else ``DEFAULT_TILE_PX``."""
        return self.own_tile_px or DEFAULT_TILE_PX

    @property
    def colour_balance(self) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        """The range of band balance of the scenes these weights were trained on, which the pipeline
        brings scenes into before the model sees them (``service.colour_balance``), as (low, high)
        per band; None (weights without ``extra['colour_balance']``): scenes are read as they are."""
        box = self.extra.get("colour_balance")
        if not box:
            return None
        low, high = box["low"], box["high"]
        return (float(low[0]), float(low[1]), float(low[2])), (float(high[0]), float(high[1]), float(high[2]))

    @property
    def min_spread(self) -> float | None:
        """The brightness spread that nearly all scenes these weights were trained on reach, which the
        pipeline raises a flatter scene's to after its colour balance (``service.colour_balance``);
        None (weights without ``extra['min_brightness_spread']``): contrast is left as it is."""
        spread = self.extra.get("min_brightness_spread")
        return float(spread) if spread else None

    @property
    def own_tile_px(self) -> int | None:
        """The tile core the weights name (``extra['tile_px']``, chosen on validation scenes), if any.
        A network's output depends on how much of its receptive field the read window fills, so
        weights trained on small crops score best on windows near that size (models/MODEL.md,
        session 16), and the same scene gives the same features only on the same windows."""
        own = self.extra.get("tile_px")
        return int(own) if own else None

    def own_floors(self, views: int = 1) -> dict[str, float]:
        """The lowest confidence worth keeping per class, chosen on validation scenes for these weights
        run with ``views`` test-time views (``railsight floors``). Averaged over views, probabilities
        come out lower and steadier, so one view's floors cost recall there: a class's floor for N
        views is in ``extra['min_confidence_tta'][str(N)]`` where the weights have one, else its
        one-view floor in ``extra['min_confidence']``. A class without a floor keeps every feature."""
        own = dict(self.extra.get("min_confidence", {}))
        if views > 1:
            own.update(self.extra.get("min_confidence_tta", {}).get(str(views), {}))
        return {cls: float(v) for cls, v in own.items()}


def split_output(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``(B, 4, H, W)`` and core probabilities ``(B, 2, H, W)`` from raw logits."""
    if logits.ndim != 4 or logits.shape[1] != OUTPUT_CHANNELS:
        raise ValueError(f"model output must be (B, {OUTPUT_CHANNELS}, H, W), got {tuple(logits.shape)}")
    n = len(SEMANTIC_CLASSES)
    # Made contiguous first: a channels-last model's output keeps channels innermost, and casting
    # and a softmax over the channels of that layout ran 3.7x slower on a CPU (25 against 6.6 ms for
    # two 576 px tiles, one core, bf16), which was a seventh of the whole model step. The planes
    # then also come out contiguous for the vectorising that reads them class by class.
    logits = logits.contiguous().float()
    return logits[:, :n].softmax(dim=1), logits[:, n:].sigmoid()
