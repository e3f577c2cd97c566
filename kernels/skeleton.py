"""Track centre lines: a thin band mask -> one-pixel skeleton -> polylines.

No library turns a skeleton into a graph of polylines without pulling in a compiler (numba), so this
is a small walk: nodes are skeleton pixels with other than two neighbours (ends and junctions); each
path between nodes becomes one polyline, and loops with no node are walked from any pixel.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_FOUR_FIRST = np.array([1, 3, 4, 6, 0, 2, 5, 7])  # indices into _OFFSETS: 4-connected steps, then diagonals


def centre_lines(band: np.ndarray, min_length_px: int = 8) -> list[np.ndarray]:
    """Polylines (each an (N, 2) array of x, y pixel-centre coordinates) along the middle of a band
    mask. Spurs shorter than ``min_length_px`` ending free are dropped."""
    skel = skeletonize(band)
    if not skel.any():
        return []
    paths = _walk(skel)
    if not paths:
        return []
    keep = _lengths(paths) >= min_length_px
    return [p for p, k in zip(paths, keep.tolist(), strict=True) if k]


def _lengths(paths: list[np.ndarray]) -> np.ndarray:
    """Polyline lengths, all in one pass over the concatenated points (every path has 2+ points)."""
    sizes = np.array([len(p) for p in paths])
    ends = np.cumsum(sizes)
    steps = np.hypot(*np.diff(np.concatenate(paths), axis=0).T)
    steps[ends[:-1] - 1] = 0.0  # from one path's last point to the next path's first: not a step
    return np.add.reduceat(steps, ends - sizes)


def _walk(skel: np.ndarray) -> list[np.ndarray]:
    h, w = skel.shape
    ys, xs = np.nonzero(skel)
    n = ys.size
    # Pixel ids and, per pixel, its skeleton neighbours' ids (-1: none), gathered with numpy once so
    # the walk below only follows integers.
    ids = np.full((h + 2, w + 2), -1, dtype=np.int64)
    ids[ys + 1, xs + 1] = np.arange(n)
    around = np.stack([ids[ys + 1 + dy, xs + 1 + dx] for dy, dx in _OFFSETS], axis=1)
    degree = (around >= 0).sum(axis=1)
    # The same, 4-connected first: the walk prefers those so a diagonal shortcut does not skip a
    # pixel of the line.
    preferred = around[:, _FOUR_FIRST].tolist()
    is_node = (degree != 2).tolist()
    # Walked edges, each as one integer (low id * n + high id): this loop is the hot spot of
    # vectorising a tile, and integers hash faster than tuples.
    walked: set[int] = set()
    paths: list[list[int]] = []

    def trace(start: int, nxt: int) -> list[int]:
        path = [start, nxt]
        walked.add(start * n + nxt if start < nxt else nxt * n + start)
        prev, cur = start, nxt
        while not is_node[cur]:
            for step in preferred[cur]:
                if step >= 0 and step != prev:
                    key = cur * n + step if cur < step else step * n + cur
                    if key not in walked:
                        break
            else:
                break
            walked.add(key)
            prev, cur = cur, step
            path.append(cur)
        return path

    nodes = np.flatnonzero(degree != 2)
    for i, around_i in zip(nodes.tolist(), around[nodes].tolist(), strict=True):
        for nb in around_i:
            if nb >= 0 and (i * n + nb if i < nb else nb * n + i) not in walked:
                paths.append(trace(i, nb))
    # Closed loops have no node: start anywhere on them.
    on_path = np.zeros(n, dtype=bool)
    for p in paths:
        on_path[p] = True
    for i in np.flatnonzero(~on_path).tolist():
        first = next((nb for nb in around[i].tolist() if nb >= 0), None)
        if on_path[i] or first is None:
            continue
        loop = trace(i, first)
        on_path[loop] = True
        paths.append(loop)
    xy = np.column_stack([xs + 0.5, ys + 0.5]).astype(np.float64)
    return [xy[p] for p in paths if len(p) > 1]
