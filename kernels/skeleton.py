"""Track centre lines: a thin band mask -> one-pixel skeleton -> polylines.

No library turns a skeleton into a graph of polylines without pulling in a compiler (numba), so this
is a small walk: nodes are skeleton pixels with other than two neighbours (ends and junctions); each
path between nodes becomes one polyline, and loops with no node are walked from any pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def centre_lines(band: np.ndarray, min_length_px: int = 8) -> list[np.ndarray]:
    """Polylines (each an (N, 2) array of x, y pixel-centre coordinates) along the middle of a band
    mask. Spurs shorter than ``min_length_px`` ending free are dropped."""
    skel = skeletonize(band)
    if not skel.any():
        return []
    return [p for p in _walk(skel) if _length(p) >= min_length_px]


def _length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum()) if len(points) > 1 else 0.0


def _walk(skel: np.ndarray) -> list[np.ndarray]:
    h, w = skel.shape
    neighbours = ndimage.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    neighbours = np.where(skel, neighbours, 0)
    padded = np.pad(skel, 1)
    visited_edges: set[tuple[int, int]] = set()
    paths: list[list[tuple[int, int]]] = []

    def step_from(y: int, x: int) -> list[tuple[int, int]]:
        return [(y + dy, x + dx) for dy, dx in _OFFSETS if padded[y + dy + 1, x + dx + 1]]

    def edge(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        ia, ib = a[0] * w + a[1], b[0] * w + b[1]
        return (ia, ib) if ia < ib else (ib, ia)

    def trace(start: tuple[int, int], nxt: tuple[int, int]) -> list[tuple[int, int]]:
        path = [start, nxt]
        visited_edges.add(edge(start, nxt))
        prev, cur = start, nxt
        while is_node[cur] == 0:
            options = [p for p in step_from(*cur) if p != prev and edge(cur, p) not in visited_edges]
            if not options:
                break
            # Prefer 4-connected steps so a diagonal shortcut does not skip a pixel of the line.
            options.sort(key=lambda p: abs(p[0] - cur[0]) + abs(p[1] - cur[1]))
            prev, cur = cur, options[0]
            visited_edges.add(edge(prev, cur))
            path.append(cur)
        return path

    is_node = skel & (neighbours != 2)
    for y, x in zip(*np.nonzero(is_node), strict=True):
        for nb in step_from(y, x):
            if edge((y, x), nb) not in visited_edges:
                paths.append(trace((int(y), int(x)), nb))
    # Closed loops have no node: start anywhere on them.
    on_path = np.zeros_like(skel)
    for p in paths:
        for y, x in p:
            on_path[y, x] = True
    for y, x in zip(*np.nonzero(skel & ~on_path), strict=True):
        if on_path[y, x]:
            continue
        nbs = step_from(y, x)
        if not nbs:
            continue
        loop = trace((int(y), int(x)), nbs[0])
        for py, px in loop:
            on_path[py, px] = True
        paths.append(loop)
    return [np.array([(x + 0.5, y + 0.5) for y, x in p], dtype=np.float64) for p in paths if len(p) > 1]
