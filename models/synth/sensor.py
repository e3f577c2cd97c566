"""What the atmosphere and the sensor do to a clean picture: colour balance, tone curve, haze,
pan-sharpening colour blur, optical blur, noise, the ground segment's sharpening and JPEG
compression.

``apply_sensor`` takes display RGB in 0..1 (3, H, W) and returns uint8; each effect is set by the
scene's conditions (see ``conditions``), and a clean scene passes through unchanged apart from
rounding.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.photometric import jpeg_roundtrip
from models.synth.noise import value_noise

_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_YCC2RGB = np.linalg.inv(_RGB2YCC).astype(np.float32)


def _mat(m: np.ndarray, img: np.ndarray) -> np.ndarray:
    return (m @ img.reshape(3, -1)).reshape(img.shape)


def _ycc(rgb: np.ndarray) -> np.ndarray:
    return _mat(_RGB2YCC, rgb)


def _rgb(ycc: np.ndarray) -> np.ndarray:
    return _mat(_YCC2RGB, ycc)


LUT_LEVELS = 4096


def _tone(img: np.ndarray, cond: dict) -> np.ndarray:
    """Gain, gamma, contrast and brightness per channel through a lookup table on 12-bit levels
    (a power per pixel costs more than the rest of the sensor together)."""
    levels = np.linspace(0.0, 1.5, LUT_LEVELS, dtype=np.float32)
    q = np.clip(img * ((LUT_LEVELS - 1) / 1.5), 0, LUT_LEVELS - 1).astype(np.int16)
    out = np.empty_like(img)
    for k, gain in enumerate(cond["gains"]):
        lut = (levels * np.float32(gain)) ** np.float32(1.0 / float(cond["gamma"]))
        lut = (lut - 0.5) * np.float32(cond["contrast"]) + np.float32(0.5 + float(cond["brightness"]))
        out[k] = lut[q[k]]
    return out


def apply_sensor(rgb: np.ndarray, cond: dict, rng: np.random.Generator) -> np.ndarray:
    img = rgb.astype(np.float32, copy=True)
    shape = img.shape[1:]
    # saturation, then sensor colour balance and tone curve
    sat = float(cond["saturation"])
    if sat != 1.0:
        mix = np.full((3, 3), (1 - sat) / 3, np.float32) + np.eye(3, dtype=np.float32) * sat
        img = _mat(mix, img)
    if cond["gains"] != [1.0, 1.0, 1.0] or cond["gamma"] != 1.0 or cond["contrast"] != 1.0 or cond["brightness"]:
        img = _tone(img, cond)
    # haze: airlight mixed in, a little uneven across the scene
    haze = float(cond["haze"])
    if haze > 0:
        field = np.clip(haze * (1 + 0.3 * value_noise(rng, shape, max(shape) / 3)), 0, 0.95)
        img *= 1 - field
        for k, airlight in enumerate(cond["haze_colour"]):
            img[k] += np.float32(airlight) * field
    # optics blur everything; pan-sharpened products also carry colour at a coarser resolution
    blur, pan = float(cond["blur_px"]), float(cond["pansharpen_px"])
    if pan > 0:
        ycc = _ycc(img)
        if blur > 0:
            ycc[0] = ndimage.gaussian_filter(ycc[0], blur, truncate=3.0)
        for k in (1, 2):
            ycc[k] = ndimage.gaussian_filter(ycc[k], float(np.hypot(pan, blur)), truncate=3.0)
        img = _rgb(ycc)
    elif blur > 0:
        img = ndimage.gaussian_filter(img, (0, blur, blur), truncate=3.0)
    img255 = img * np.float32(255.0)
    if cond["noise"] > 0:
        sigma = np.float32(cond["noise"])
        img255 += sigma * rng.standard_normal(shape, dtype=np.float32)[None]  # luminance noise
        chroma = (sigma * np.float32(0.4)) * rng.standard_normal(shape, dtype=np.float32)
        img255[0] += chroma
        img255[2] -= chroma
    if cond["sharpen"] > 0:  # after the noise: MTF compensation amplifies it too
        radius = float(cond["sharpen_px"])
        soft = ndimage.gaussian_filter(img255, (0, radius, radius), truncate=3.0)
        img255 += np.float32(cond["sharpen"]) * (img255 - soft)
    np.clip(img255, 0, 255, out=img255)
    img255 += np.float32(0.5)
    out = img255.astype(np.uint8)
    if cond["jpeg_quality"]:
        # A real JPEG (libjpeg through Pillow): chroma at half resolution (4:2:0), as JPEG-compressed
        # GeoTIFFs and web map tiles carry it. Engine 1.4.0's own block DCT kept chroma at full
        # resolution; at 1 m a car's colour then outlived a compression that smears it in real files
        # (held-out railcar F1 0.818 -> 0.622 at 0.8-1.0 m under Pillow's JPEG 75, 0.743 with 4:4:4).
        out = jpeg_roundtrip(out, int(cond["jpeg_quality"]))
    return out
