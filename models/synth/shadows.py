"""Cast shadows from a height map, for any sun azimuth and elevation.

A ground point ``x`` is in shadow when something towards the sun rises above the sun ray through it:
``S(x) = max_t [H(x + t d) - t tan(e)] > H(x)``, with ``d`` the unit step towards the sun and ``e``
the sun elevation. Along one ray that is a running maximum: with ``G(k) = H(k) + k c`` (``c`` the
drop per step), ``S(k) = cummax(G)(k) - k c``. The image is sheared (whole-pixel row shifts per
column) so every sun ray becomes one array row; ``np.maximum.accumulate`` then does all rays at once
and the shear is undone. Exact up to half a pixel of rounding in the shear.
"""

from __future__ import annotations

import math

import numpy as np


def cast_shadows(
    height: np.ndarray, pixel_size_m: float, sun_elevation_deg: float, sun_azimuth_deg: float, min_depth_m: float = 0.15
) -> np.ndarray:
    """Boolean (H, W): pixels that a taller neighbour hides from the sun by more than ``min_depth_m``.

    ``height`` in metres on a north-up grid (rows run south); azimuth clockwise from north."""
    az = math.radians(sun_azimuth_deg)
    # shadows fall away from the sun: direction in (col, row) pixel steps
    dcol, drow = -math.sin(az), math.cos(az)
    h = height.astype(np.float32, copy=False)
    transposed = abs(drow) > abs(dcol)
    if transposed:
        h = h.T
        dcol, drow = drow, dcol
    flipped = dcol < 0
    if flipped:
        h = h[:, ::-1]
    slope = drow / abs(dcol)  # rows per column along a shadow ray
    drop = pixel_size_m * math.hypot(1.0, slope) * math.tan(math.radians(max(sun_elevation_deg, 1.0)))
    rows, cols = h.shape
    shift = np.rint(np.arange(cols) * slope).astype(np.int64)
    pad = int(max(0, shift.max()))
    lo = int(min(0, shift.min()))
    n_rows = rows + pad - lo
    # sheared[i, c] = h[i - pad + shift[c], c]; a shadow ray is then a constant i
    src_rows = np.arange(n_rows)[:, None] - pad + shift[None, :]
    inside = (src_rows >= 0) & (src_rows < rows)
    sheared = np.full((n_rows, cols), -1e4, dtype=np.float32)
    col_idx = np.broadcast_to(np.arange(cols)[None, :], src_rows.shape)
    sheared[inside] = h[src_rows[inside], col_idx[inside]]
    ramp = (np.arange(cols, dtype=np.float32) * drop)[None, :]
    # rays run towards +col (away from the sun), so the caster of column c lies at columns < c
    reach = np.maximum.accumulate(sheared + ramp, axis=1) - ramp
    back_rows = np.arange(rows)[:, None] + pad - shift[None, :]
    shadow_h = reach[back_rows, np.broadcast_to(np.arange(cols)[None, :], back_rows.shape)]
    shadow = shadow_h > h + min_depth_m
    if flipped:
        shadow = shadow[:, ::-1]
    if transposed:
        shadow = shadow.T
    return np.ascontiguousarray(shadow)
