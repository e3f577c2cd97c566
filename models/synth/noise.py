"""Cheap procedural noise on pixel grids: smooth value noise, fractal sums and box-filtered stripes.

All functions are vectorised numpy and return float32. Feature sizes are given in *pixels*; callers
convert from metres (``metres / pixel_size``), so a texture keeps its ground size at any pixel size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


class ValueNoise:
    """Smooth noise in about [-1, 1] with features ``scale_px`` pixels across (per-pixel noise at
    1 px and below): a coarse grid of uniform values, one every ``scale_px`` pixels, interpolated
    with a smoothstep fade. ``full()`` evaluates the whole grid separably (rows, then columns);
    ``at(rows, cols)`` evaluates only the given pixels."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> None:
        self.shape = shape
        self.scale = max(float(scale_px), 1.0)
        h, w = shape
        grid = rng.uniform(-1.0, 1.0, size=(int(h / self.scale) + 3, int(w / self.scale) + 3)).astype(np.float32)
        if self.scale >= 3.0:
            # a little smoothing of the coarse grid hides its axes (plain value noise looks blocky)
            grid = ndimage.gaussian_filter(grid, 0.7, mode="wrap")
            grid *= np.float32(1.0 / max(float(np.abs(grid).max()), 1e-6))
        self.grid = grid
        self.offset = rng.uniform(0.0, 1.0, size=2).astype(np.float32)

    def _coords(self, idx: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        t = idx.astype(np.float32) / np.float32(self.scale) + self.offset[axis]
        i = t.astype(np.int32)
        return i, _fade(t - i.astype(np.float32))

    def full(self) -> np.ndarray:
        h, w = self.shape
        iy, fy = self._coords(np.arange(h), 0)
        ix, fx = self._coords(np.arange(w), 1)
        fy, fx = fy[:, None], fx[None, :]
        rows = self.grid[iy] * (1.0 - fy) + self.grid[iy + 1] * fy
        return rows[:, ix] * (1.0 - fx) + rows[:, ix + 1] * fx

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        iy, fy = self._coords(rows, 0)
        ix, fx = self._coords(cols, 1)
        g = self.grid
        top = g[iy, ix] * (1.0 - fx) + g[iy, ix + 1] * fx
        bottom = g[iy + 1, ix] * (1.0 - fx) + g[iy + 1, ix + 1] * fx
        return top * (1.0 - fy) + bottom * fy


def value_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """``ValueNoise`` over the whole grid."""
    return ValueNoise(rng, shape, scale_px).full()


def fractal(
    rng: np.random.Generator,
    shape: tuple[int, int],
    scale_px: float,
    octaves: int = 3,
    persistence: float = 0.5,
) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, each half the size and ``persistence`` the weight of the
    last, normalised to about [-1, 1]."""
    out = np.zeros(shape, dtype=np.float32)
    amp, total, scale = 1.0, 0.0, scale_px
    for _ in range(octaves):
        out += amp * value_noise(rng, shape, scale)
        total += amp
        amp *= persistence
        scale /= 2.0
    out /= total
    return out


def stripe_coverage(s: np.ndarray, period: float, width: float, footprint) -> np.ndarray:
    """Share of a pixel covered by stripes ``width`` wide every ``period`` (a square wave along ``s``),
    for a pixel whose footprint along ``s`` is ``footprint``: the square wave box-filtered exactly,
    so fine stripes (sleepers, corrugations) fade to their mean instead of aliasing into noise.

    ``F(x) = floor(x / P) * a + min(x mod P, a)`` is the integral of the wave; coverage is
    ``(F(s + f/2) - F(s - f/2)) / f``."""
    footprint = np.maximum(footprint, 1e-6)

    def integral(x: np.ndarray) -> np.ndarray:
        return np.floor(x / period) * width + np.minimum(np.mod(x, period), width)

    return ((integral(s + footprint / 2) - integral(s - footprint / 2)) / footprint).astype(np.float32)


def band_coverage(d: np.ndarray, centre: float, width: float, footprint: float) -> np.ndarray:
    """Share of a pixel (``footprint`` across) covered by a band ``width`` wide centred at ``centre``
    along the coordinate ``d``: the overlap of two intervals. Draws sub-pixel lines (rails, wires)."""
    lo = np.maximum(d - footprint / 2, centre - width / 2)
    hi = np.minimum(d + footprint / 2, centre + width / 2)
    return (np.clip(hi - lo, 0.0, None) / footprint).astype(np.float32)
