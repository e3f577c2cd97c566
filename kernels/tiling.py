"""Tile planning as pure arithmetic.

A scene grid of ``W x H`` pixels is cut into cores of ``t x t`` pixels (the last row and column of
cores are cut short by the grid's edge):

    n_cols = ceil(W / t),  n_rows = ceil(H / t)
    core(i, j) = [j*t, min((j+1)*t, W)) x [i*t, min((i+1)*t, H))

Every tile is *read* with a halo of ``h`` pixels on each side, a fixed ``(t + 2h)`` square starting
at ``(j*t - h, i*t - h)``, so tiles stack into batches; parts outside the grid are padding. An object
belongs to the one tile whose core holds its centroid, and is seen whole as long as
``h >= half the largest object's extent``. The halo is overhead, ``((t + 2h) / t)^2`` times the
pixels: 1.27 at t = 512, h = 32, and 1.13 at t = 1024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Model inputs must be a multiple of this (the network downsamples by 2 four times, and by 32 on
# the safe side for torch.compile-friendly shapes).
SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class Tile:
    index: int
    core_col: int
    core_row: int
    core_width: int
    core_height: int
    halo: int
    size: int  # read window side: core tile size + 2 * halo

    @property
    def col(self) -> int:
        """Left of the read window in grid pixels (may be negative)."""
        return self.core_col - self.halo

    @property
    def row(self) -> int:
        return self.core_row - self.halo

    def owns(self, x: float, y: float) -> bool:
        """Whether a point in grid pixel coordinates lies in this tile's core (half-open)."""
        return (
            self.core_col <= x < self.core_col + self.core_width
            and self.core_row <= y < self.core_row + self.core_height
        )

    def core_slices(self) -> tuple[slice, slice]:
        """Row and column slices of the core inside the read window."""
        return (
            slice(self.halo, self.halo + self.core_height),
            slice(self.halo, self.halo + self.core_width),
        )


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def effective_tile_size(tile: int, width: int, height: int) -> int:
    """The requested core size, shrunk for scenes smaller than one tile, kept a multiple of 32."""
    if tile % SIZE_MULTIPLE:
        raise ValueError(f"tile size must be a multiple of {SIZE_MULTIPLE}, got {tile}")
    return min(tile, round_up(max(width, height), SIZE_MULTIPLE))


def plan_tiles(width: int, height: int, tile: int, halo: int) -> list[Tile]:
    """All tiles of a ``width x height`` grid, row-major. ``halo`` must be a multiple of 16 so the
    read window stays a model-friendly size."""
    if width <= 0 or height <= 0:
        raise ValueError(f"grid must be non-empty, got {width} x {height}")
    if halo < 0 or halo % 16:
        raise ValueError(f"halo must be a non-negative multiple of 16, got {halo}")
    t = effective_tile_size(tile, width, height)
    tiles: list[Tile] = []
    for i in range(math.ceil(height / t)):
        for j in range(math.ceil(width / t)):
            c0, r0 = j * t, i * t
            tiles.append(
                Tile(
                    index=len(tiles),
                    core_col=c0,
                    core_row=r0,
                    core_width=min(t, width - c0),
                    core_height=min(t, height - r0),
                    halo=halo,
                    size=t + 2 * halo,
                )
            )
    return tiles


def batches(tiles: list[Tile], batch_size: int) -> list[list[Tile]]:
    """Consecutive runs of at most ``batch_size`` tiles (neighbours share reads in GDAL's cache)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]


def squares(tiles: list[Tile], side: int) -> list[list[Tile]]:
    """``tiles`` grouped by the ``side x side`` square of the grid their core's corner lies in:
    squares in row-major order, each group in the order ``tiles`` came."""
    if side < 1:
        raise ValueError(f"square side must be at least 1, got {side}")
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault((t.core_row // side, t.core_col // side), []).append(t)
    return [groups[key] for key in sorted(groups)]
