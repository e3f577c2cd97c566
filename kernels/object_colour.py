"""The colour of each detected object, from the tile's own pixels under it.

Analysts follow one train from image to image by the colour of its cars ("light blue, darker blue
and reddish-brown", shared/USE_CASE.md), and tell tarps apart the same way. The colour is the mean
of the RGB the model saw (after the scene's colour balance, so a sensor's cast is mostly gone) over
the object's labelled pixels. For a railcar only the middle of its rectangle counts: its long
edges are where roof meets shadow and ballast, and its ends the coupling gaps.
"""

from __future__ import annotations

import numpy as np

NO_COLOUR = -1  # in an (N, 3) colour array: the object's colour is not known
# The inner part of a railcar's rectangle, as fractions of its width and of its length.
INNER_ACROSS = (0.2, 0.8)
INNER_ALONG = (0.05, 0.95)


def mean_colours(rgb: np.ndarray, ys: np.ndarray, xs: np.ndarray, owner: np.ndarray, n: int,
                 inner: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) int16 mean colours of ``n`` objects: ``rgb`` (3, H, W) uint8, pixel rows ``ys`` and
    columns ``xs`` with the object each belongs to (``owner``, -1 for none). With ``inner`` (a bool
    per pixel), an object's colour is the mean over its inner pixels where it has any."""
    out = np.full((n, 3), NO_COLOUR, dtype=np.int16)
    mine = owner >= 0
    if not n or not mine.any():
        return out
    ys, xs, owner = ys[mine], xs[mine], owner[mine]
    if inner is not None:
        inner = inner[mine]
        has_inner = np.bincount(owner[inner], minlength=n) > 0
        # an object with inner pixels is coloured by them alone, any other by all of its pixels
        counted = inner | ~has_inner[owner]
        ys, xs, owner = ys[counted], xs[counted], owner[counted]
    held = np.bincount(owner, minlength=n)
    some = held > 0
    values = rgb[:, ys, xs]
    for channel in range(3):
        sums = np.bincount(owner, weights=values[channel], minlength=n)
        out[some, channel] = np.rint(sums[some] / held[some]).astype(np.int16)
    return out


def inner_of_rectangles(x: np.ndarray, y: np.ndarray, owner: np.ndarray, corner: np.ndarray, along: np.ndarray,
                        across: np.ndarray) -> np.ndarray:
    """Which points (``x``, ``y``) lie in the inner part (``INNER_ALONG`` x ``INNER_ACROSS``) of the
    rectangle ``owner`` names, each rectangle given by a corner and its long and short side vectors
    (as ``kernels.vectorise.rectangle_sides`` gives them); False for an owner of -1."""
    ok = owner >= 0
    if not ok.any():
        return ok
    with np.errstate(invalid="ignore", divide="ignore"):
        # Per rectangle: its corner, and each side over its squared length, so that a point's
        # fraction along a side is one dot product; gathered per point in one take.
        table = np.column_stack([corner, along / (along**2).sum(axis=1, keepdims=True),
                                 across / (across**2).sum(axis=1, keepdims=True)])
    per = table[np.where(ok, owner, 0)]
    dx, dy = x - per[:, 0], y - per[:, 1]
    t = dx * per[:, 2] + dy * per[:, 3]
    s = dx * per[:, 4] + dy * per[:, 5]
    return ok & (t > INNER_ALONG[0]) & (t < INNER_ALONG[1]) & (s > INNER_ACROSS[0]) & (s < INNER_ACROSS[1])


def colour_tuples(colours: np.ndarray) -> list[tuple[int, int, int] | None]:
    """(N, 3) colours -> one (r, g, b) tuple per object, None where the colour is not known."""
    return [(r, g, b) if r >= 0 else None for r, g, b in colours.tolist()]


def hex_colours(colours: np.ndarray) -> np.ndarray:
    """(N, 3) colours -> an object array of "#rrggbb" strings, None where the colour is not known."""
    out = np.full(len(colours), None, dtype=object)
    known = np.flatnonzero((colours >= 0).all(axis=1)) if len(colours) else np.zeros(0, dtype=np.int64)
    out[known] = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in colours[known].tolist()]
    return out
