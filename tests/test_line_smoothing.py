"""Smoothing track centre lines (kernels.line_smoothing)."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LineString

from kernels.line_smoothing import smooth_lines

RULES = {"step": 2.0, "half_window": 6.0, "simplify": 0.25}


def test_a_zigzag_about_a_straight_track_is_flattened_and_its_ends_stay():
    x = np.arange(0, 101, 2.0)
    zigzag = LineString(np.column_stack([x, np.where(np.arange(x.size) % 2, 1.0, -1.0)]))
    (smooth,) = smooth_lines(np.array([zigzag], dtype=object), **RULES)
    xy = np.asarray(smooth.coords)
    assert tuple(xy[0]) == zigzag.coords[0] and tuple(xy[-1]) == zigzag.coords[-1]
    inner = xy[(xy[:, 0] >= 6) & (xy[:, 0] <= 94)]  # a full window either side
    assert len(inner) and np.abs(inner[:, 1]).max() <= 1 / 7 + 1e-9  # seven vertices, 4 against 3
    assert smooth.length < zigzag.length


def test_a_straight_line_and_a_gentle_curve_keep_their_shape():
    straight = LineString([(0, 0), (100, 0)])
    t = np.radians(np.linspace(0, 30, 60))
    curve = LineString(np.column_stack([300 * np.cos(t), 300 * np.sin(t)]))  # radius 300 px
    smooth = smooth_lines(np.array([straight, curve], dtype=object), **RULES)
    assert smooth[0].equals(straight)
    # The average cuts a curve's corner by about w^2 / (6 r) (0.02 px here) for a window of w either
    # side; the simplification after it by up to its tolerance.
    assert shapely.hausdorff_distance(smooth[1], curve) <= 0.02 + RULES["simplify"]


def test_degenerate_and_empty_input():
    point_line = LineString([(5, 5), (5, 5)])
    (same,) = smooth_lines(np.array([point_line], dtype=object), **RULES)
    assert same.equals(point_line)
    assert len(smooth_lines(np.zeros(0, dtype=object), **RULES)) == 0


def _masked_means(line: LineString, step: float, half_window: float) -> np.ndarray:
    """Each vertex's mean over its window, one line at a time and every term masked: the rule the
    kernel's faster sums must keep, to the last bit."""
    xy = np.asarray(shapely.segmentize(line, step).coords)
    k, n = int(round(half_window / step)), len(xy)
    position = np.arange(n)
    half = np.minimum(k, np.minimum(position, n - 1 - position))
    padded = np.concatenate([np.zeros((k, 2)), xy, np.zeros((k, 2))])
    total = np.zeros_like(xy)
    for j in range(-k, k + 1):
        total += padded[k + j : k + j + n] * (abs(j) <= half)[:, None]
    return total / (2 * half + 1)[:, None]


def test_every_vertex_gets_its_own_lines_masked_mean_exactly():
    # Lines shorter than a window, about one window, and long; in one call, so their vertices sit
    # side by side in the kernel's arrays and a window that ran into the next line would show.
    rng = np.random.default_rng(3)
    lines = [LineString(np.cumsum(rng.normal(0.0, 3.0, (n, 2)), axis=0) + rng.uniform(0, 500, 2))
             for n in (2, 3, 5, 7, 40, 4, 120, 2, 9)]
    smooth = smooth_lines(np.array(lines, dtype=object), step=2.0, half_window=6.0, simplify=0.0)
    for line, got in zip(lines, smooth, strict=True):
        assert np.array_equal(np.asarray(got.coords), _masked_means(line, 2.0, 6.0))
