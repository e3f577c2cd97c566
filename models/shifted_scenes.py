"""A copy of an evaluation set with every image under one fixed photometric shift.

Scenes drawn elsewhere (another renderer, another sensor) differ from the engine's in colour,
contrast, sharpness and compression. Scoring the model on shifted copies of scenes it never saw
measures how much of its accuracy survives such a difference:

    python -m models.shifted_scenes runs/eval/val runs/eval/val-jpeg30 --shift jpeg30
    railsight eval --scenes runs/eval/val-jpeg30

Truth, label rasters and the index are copied unchanged; each image keeps its grid, CRS and
no-data mask. ``bgr`` and ``hue60`` are not among the shifts training draws from
(``models.photometric``), so they stay a check on shifts the model was not taught.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.photometric import jpeg_roundtrip


def _gain(red: float, green: float, blue: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: x * np.array([red, green, blue], dtype=np.float32)[:, None, None]


def _contrast(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    def scaled(x: np.ndarray) -> np.ndarray:
        mean = x.mean()
        return (x - mean) * factor + mean

    return scaled


def _hue_rotation(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
    """Rotation about the grey axis of RGB space: hues turn, greys and brightness stay."""
    a = np.radians(degrees)
    k = np.ones((3, 3)) / 3.0
    cross = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3.0)
    matrix = (np.cos(a) * np.eye(3) + np.sin(a) * cross + (1 - np.cos(a)) * k).astype(np.float32)
    return lambda x: np.einsum("ij,jhw->ihw", matrix, x)


def _blur(x: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(0.0, 1.2, 1.2))


def _sharpen(x: np.ndarray) -> np.ndarray:
    return x + 1.5 * (x - ndimage.gaussian_filter(x, sigma=(0.0, 2.0, 2.0)))


# name -> shift of a float (3, H, W) image in 0..1 (the result is clipped back to 0..1)
FLOAT_SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gamma0.6": lambda x: x**0.6,
    "gamma1.6": lambda x: x**1.6,
    "lowcontrast": _contrast(0.5),
    "highcontrast": _contrast(1.6),
    "grey": lambda x: np.repeat(x.mean(axis=0, keepdims=True), 3, axis=0),
    "warm": _gain(1.2, 1.05, 0.8),
    "cool": _gain(0.8, 0.95, 1.2),
    "blur": _blur,
    "sharpen": _sharpen,
    "bgr": lambda x: x[::-1],
    "hue60": _hue_rotation(60.0),
}
# JPEG at quality 30 is harsh; 75 is what web map tiles and many orthophoto deliveries use.
JPEG_QUALITIES = {"jpeg30": 30, "jpeg75": 75}
SHIFTS = (*FLOAT_SHIFTS, "noise", *JPEG_QUALITIES)


def shift_image(rgb: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """``rgb``: (3, H, W) uint8. ``noise`` adds Gaussian noise of 10 grey levels (seeded);
    ``jpeg30`` and ``jpeg75`` round-trip the image through JPEG at that quality."""
    if name in JPEG_QUALITIES:
        return jpeg_roundtrip(rgb, JPEG_QUALITIES[name])
    x = rgb.astype(np.float32) / 255.0
    if name == "noise":
        x = x + np.random.default_rng(seed).normal(0.0, 10 / 255, x.shape).astype(np.float32)
    else:
        x = FLOAT_SHIFTS[name](x)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def write_shifted_set(src: Path, dst: Path, name: str) -> int:
    """Writes the shifted copy of every scene image in ``src`` to ``dst``; returns how many."""
    import rasterio

    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}: choose one of {', '.join(SHIFTS)}")
    images = sorted(p for p in src.glob("*.tif") if not p.name.endswith(".labels.tif"))
    if not images:
        raise ValueError(f"no scene images (*.tif) in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    for seed, path in enumerate(images):
        with rasterio.open(path) as scene:
            profile, rgb, mask = scene.profile, scene.read(), scene.dataset_mask()
        shifted = np.where(mask[None] > 0, shift_image(rgb, name, seed), rgb)
        with rasterio.open(dst / path.name, "w", **profile) as out:
            out.write(shifted)
            if not (mask > 0).all():
                out.write_mask(mask)
    for other in src.iterdir():
        if other.is_file() and other not in images and not other.name.endswith(".aux.xml"):
            shutil.copyfile(other, dst / other.name)
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.shifted_scenes", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="evaluation set (railsight synth output)")
    parser.add_argument("dst", type=Path, help="folder to write the shifted copy to")
    parser.add_argument("--shift", required=True, choices=SHIFTS)
    args = parser.parse_args(argv)
    try:
        count = write_shifted_set(args.src, args.dst, args.shift)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} scene(s) shifted by {args.shift} to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
