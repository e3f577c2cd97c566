"""Per-scene colour balance: a scene whose band balance lies outside the range of the model's
training scenes is brought to the edge of that range by one gain per band.

Imagery from another sensor, renderer or processing chain often carries a colour cast the model
never saw. A cast is close to a per-band gain, and a per-band gain is undone by scaling each band.
The balance of a scene is each band's mean over its valid pixels as a share of the mean brightness
(grey world). The weights carry the interquartile range of it over their training scenes
(``extra['colour_balance']``, recorded by ``railsight train``); a scene inside it is read as it is,
and one outside is moved, band by band, to the nearest edge, its mean brightness kept. Moving every
scene to the median balance instead also undid casts, but tinted grey pictures and cost railcar and
cargo F1 on other shifts (MODEL.md, session 24, has the measurements). The statistics come from the
sample ``service.rasters.inspect_scene`` reads for its checks.
"""

from __future__ import annotations

import numpy as np

# Gains are held to this range: a scene whose band is almost empty (a near-black band, an infrared
# false-colour file) is not a cast to undo, and amplifying its noise would not help the model.
MIN_GAIN, MAX_GAIN = 0.5, 2.0

Balance = tuple[float, float, float]
BalanceBox = tuple[Balance, Balance]  # per band, the lowest and highest balance left as it is


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


def apply_gains(rgb: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """``rgb`` (3, H, W) uint8 with each band scaled by its gain, rounded and clipped to 0..255, in
    place: a 256-entry table per band (0.3 ms for a 320 px window on this project's 2-core CPU, about
    1 % of the model's fp32 time on it, against 0.76 ms for fancy indexing). Each
    output pixel depends on its own input pixel only, so the unbuffered ``clip`` mode may write over
    what it reads."""
    levels = np.arange(256, dtype=np.float64)
    for band, gain in enumerate(gains):
        table = np.clip(np.rint(levels * gain), 0, 255).astype(np.uint8)
        np.take(table, rgb[band], out=rgb[band], mode="clip")
    return rgb
