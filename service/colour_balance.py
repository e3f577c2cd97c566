"""Per-scene colour balance and contrast: a scene whose band balance lies outside the range of the
model's training scenes is brought to the edge of that range by one gain per band, and one flatter
than nearly all of them is given more contrast by one scale about each band's mean.

Imagery from another sensor, renderer or processing chain often carries a colour cast the model
never saw. A cast is close to a per-band gain, and a per-band gain is undone by scaling each band.
The balance of a scene is each band's mean over its valid pixels as a share of the mean brightness
(grey world). The weights carry the interquartile range of it over their training scenes
(``extra['colour_balance']``, recorded by ``railsight train``); a scene inside it is read as it is,
and one outside is moved, band by band, to the nearest edge, its mean brightness kept. Moving every
scene to the median balance instead also undid casts, but tinted grey pictures and cost railcar and
cargo F1 on other shifts (MODEL.md, session 24, has the measurements). The statistics come from the
sample ``service.rasters.inspect_scene`` reads for its checks.

Contrast: a scene whose brightness spread (the standard deviation of the mean of its bands over
valid pixels) is under the weights' ``extra['min_brightness_spread']`` (p10 of their training
scenes) is scaled up to it about each band's mean, which keeps the band balance. A hazy or flat
scene then shows the model the contrast it learnt on: on held-out scenes at half contrast railcar
F1 0.748 -> 0.779 and cargo F1 0.625 -> 0.694. Wider spreads are left alone: also scaling those
above p90 down to it gained nothing at 1.6x contrast and cost snow scenes, whose white ground makes
a wide spread, railcar F1 0.019 on validation (MODEL.md, session 25).
"""

from __future__ import annotations

import numpy as np

# Gains are held to this range: a scene whose band is almost empty (a near-black band, an infrared
# false-colour file) is not a cast to undo, and amplifying its noise would not help the model.
MIN_GAIN, MAX_GAIN = 0.5, 2.0

# The most a scene's contrast is raised: one with almost no spread (fog, water, a blank frame) has
# no contrast to restore, only noise to amplify.
MAX_CONTRAST = 2.0

Balance = tuple[float, float, float]
BalanceBox = tuple[Balance, Balance]  # per band, the lowest and highest balance left as it is
Contrast = tuple[float, Balance]  # a scale, and the band means (0..255) it scales about


def band_balance(sample: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``sample`` (3, H, W) on the model's 0..255 scale, ``valid`` (H, W) bool: each band's mean over
    the valid pixels as a share of the three bands' mean brightness (they sum to 3)."""
    means = sample[:, valid].astype(np.float64).mean(axis=1)
    brightness = float(means.mean())
    if brightness <= 0.0:
        return np.ones(3)
    return means / brightness


def balance_gains(sample: np.ndarray, valid: np.ndarray, box: BalanceBox) -> tuple[float, float, float] | None:
    """Per-band gains that bring the scene's balance into ``box`` (low and high ``band_balance`` per
    band, those of the model's training scenes): each band to the nearest edge of its range, then
    all scaled to keep the scene's mean brightness. None for a scene already inside: it is read as
    it is."""
    current = np.maximum(band_balance(sample, valid), 1e-3)
    wanted = np.clip(current, box[0], box[1])
    if np.array_equal(wanted, current):
        return None
    gains = np.clip(wanted / wanted.mean() / current, MIN_GAIN, MAX_GAIN)
    return (float(gains[0]), float(gains[1]), float(gains[2]))


def brightness_spread(sample: np.ndarray, valid: np.ndarray) -> float:
    """The standard deviation, over the valid pixels, of the mean of the three bands (0..255 scale)."""
    return float(sample[:, valid].astype(np.float64).mean(axis=0).std())


def contrast_step(sample: np.ndarray, valid: np.ndarray, min_spread: float) -> Contrast | None:
    """The scale that raises the scene's brightness spread to ``min_spread`` (the model's), about
    each band's mean, at most MAX_CONTRAST; None for a scene with that spread or more. ``sample`` is
    read as the model will see it, after any colour gains."""
    spread = brightness_spread(sample, valid)
    if spread >= min_spread:
        return None
    scale = min(min_spread / spread if spread > 0 else MAX_CONTRAST, MAX_CONTRAST)
    means = sample[:, valid].astype(np.float64).mean(axis=1)
    return scale, (float(means[0]), float(means[1]), float(means[2]))


def apply_tone(rgb: np.ndarray, gains: Balance | None, contrast: Contrast | None = None) -> np.ndarray:
    """``rgb`` (3, H, W) uint8 with each band scaled by its gain, then, with a ``contrast``, its
    deviation from the band's mean scaled; rounded and clipped to 0..255, in place: a 256-entry table
    per band (0.3 ms for a 320 px window on this project's 2-core CPU, about 1 % of the model's fp32
    time on it, against 0.76 ms for fancy indexing). Each output pixel depends on its own input
    pixel only, so the unbuffered ``clip`` mode may write over what it reads."""
    levels = np.arange(256, dtype=np.float64)
    for band in range(3):
        values = levels * (gains[band] if gains else 1.0)
        if contrast:
            scale, means = contrast
            values = (values - means[band]) * scale + means[band]
        table = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        np.take(table, rgb[band], out=rgb[band], mode="clip")
    return rgb
