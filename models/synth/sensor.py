"""What the atmosphere and the sensor do to a clean picture: colour balance, tone curve, haze,
pan-sharpening colour blur, optical blur, noise, the ground segment's sharpening and JPEG-like
block compression.

``apply_sensor`` takes display RGB in 0..1 (3, H, W) and returns uint8; each effect is set by the
scene's conditions (see ``conditions``), and a clean scene passes through unchanged apart from
rounding.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

from models.synth.noise import value_noise

# The JPEG luminance table (ITU T.81, Annex K), scaled by quality like libjpeg does.
_JPEG_Q = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float32,
)
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


def jpeg_like(img255: np.ndarray, quality: int) -> np.ndarray:
    """Block DCT quantisation of (3, H, W) values in 0..255: luma at full resolution, chroma
    quantised harder, the 8x8 blocking and ringing of a JPEG at ``quality`` (1..100)."""
    q = max(1, min(100, int(quality)))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    table = np.clip(np.floor((_JPEG_Q * scale + 50) / 100), 1, 255)
    _, h, w = img255.shape
    ph, pw = (-h) % 8, (-w) % 8
    ycc = _ycc(np.pad(img255, ((0, 0), (0, ph), (0, pw)), mode="edge") - 128.0)
    hh, ww = ycc.shape[1:]
    blocks = ycc.reshape(3, hh // 8, 8, ww // 8, 8).transpose(0, 1, 3, 2, 4)
    coef = fft.dctn(blocks, axes=(-2, -1), norm="ortho")
    tables = np.stack([table, table * 1.8, table * 1.8])[:, None, None]
    coef = np.round(coef / tables) * tables
    blocks = fft.idctn(coef, axes=(-2, -1), norm="ortho")
    out = _rgb(blocks.transpose(0, 1, 3, 2, 4).reshape(3, hh, ww)) + 128.0
    return out[:, :h, :w]


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
    if cond["jpeg_quality"]:
        img255 = jpeg_like(np.clip(img255, 0, 255), int(cond["jpeg_quality"]))
    np.clip(img255, 0, 255, out=img255)
    img255 += np.float32(0.5)
    return img255.astype(np.uint8)
