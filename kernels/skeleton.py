"""Track centre lines: a thin band mask -> one-pixel skeleton -> polylines.

The skeleton is a graph of pixels. Nodes are pixels with other than two neighbours (ends and
junctions); the other pixels form chains, each a path between nodes or a closed loop. Every chain
becomes one polyline with the nodes at its ends. The chains are put in order by one depth-first
search in C (scipy's csgraph) from a virtual root joined to one end of each chain, which visits
each chain whole before the next: a pixel-by-pixel walk in Python was the largest part of
vectorising a tile (22 of 79 ms).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import depth_first_order
from skimage.morphology import skeletonize

from kernels.instances import bounding_box

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def centre_lines(band: np.ndarray, min_length_px: int = 8) -> list[np.ndarray]:
    """Polylines (each an (N, 2) array of x, y pixel-centre coordinates) along the middle of a band
    mask. Spurs shorter than ``min_length_px`` ending free are dropped."""
    xy, sizes = centre_line_points(band, min_length_px)
    return np.split(xy, np.cumsum(sizes)[:-1]) if sizes.size else []


def centre_line_points(band: np.ndarray, min_length_px: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``centre_lines`` as one (M, 2) array of points, line after line, and each line's number of
    points: splitting into a list and joining again cost a sixth of a tile's centre-line time."""
    if not band.any():
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    # Thinned inside the band's bounding box and a pixel around it, which gives the same skeleton
    # (thinning looks only at a pixel's 3 x 3 neighbours): a track band covers about half its tile's box.
    rows, cols = bounding_box(band)
    r0, c0 = max(rows.start - 1, 0), max(cols.start - 1, 0)
    skel = skeletonize(band[r0 : rows.stop + 1, c0 : cols.stop + 1])
    if not skel.any():
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    xy, sizes = _chains(skel)
    if not sizes.size:
        return xy, sizes
    xy += (c0, r0)
    ends = np.cumsum(sizes)
    steps = np.hypot(*np.diff(xy, axis=0).T)
    steps[ends[:-1] - 1] = 0.0  # from one path's last point to the next path's first: not a step
    keep = np.add.reduceat(steps, ends - sizes) >= min_length_px
    return xy[np.repeat(keep, sizes)], sizes[keep]


def _chains(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every chain of the skeleton with the nodes at its ends, and every pair of adjacent nodes, as
    one (M, 2) array of x, y pixel centres, path after path, and the number of points of each."""
    # On the flattened skeleton with a one-pixel border, a neighbour is a fixed step away: one gather
    # for all eight of every pixel (2-D indexing, one per direction, took three times as long).
    h, w = skel.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = skel
    flat = np.flatnonzero(padded)  # raster order: ids follow it
    n = flat.size
    ids = np.full(padded.size, -1, dtype=np.int64)
    ids[flat] = np.arange(n)
    around = ids[flat[:, None] + np.array([dy * (w + 2) + dx for dy, dx in _OFFSETS])]  # (n, 8), -1: none
    ys, xs = np.divmod(flat, w + 2)
    ys, xs = ys - 1, xs - 1
    node = (around >= 0).sum(axis=1) != 2
    # Every 8-neighbour pair once (low id first).
    a = np.repeat(np.arange(n), 8)
    b = around.ravel()
    pair = b > a
    a, b = a[pair], b[pair]
    both = node[a] & node[b]  # two nodes side by side: a path of their own
    chain = np.flatnonzero(~node)
    pieces = [np.column_stack([a[both], b[both]]).ravel()]
    sizes = [np.full(int(both.sum()), 2)]
    if chain.size:
        body, body_sizes = _ordered_chains(n, around, node, chain)
        pieces.append(body)
        sizes.append(body_sizes)
    xy = np.column_stack([xs + 0.5, ys + 0.5])
    return xy[np.concatenate(pieces)], np.concatenate(sizes)


def _ordered_chains(n: int, around: np.ndarray, node: np.ndarray, chain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ids of each chain in order, a node prepended and appended where the chain meets one
    (a closed loop repeats its first pixel instead), and the length of each. ``n`` skeleton pixels,
    ``around`` their 8 neighbours' ids (-1: none), ``node`` which are nodes, ``chain`` the ids of the
    others."""
    # One depth-first search over a directed graph: a virtual root leads to every chain end in
    # ascending order, then to a second virtual node leading to every chain pixel in ascending order,
    # which enters each closed loop (no end) at its smallest pixel once the open chains are done.
    # Built as CSR rows directly: ``around`` lists neighbours in raster order, the order ids were
    # given in, so each row is already sorted (a sparse COO build took two fifths of this function).
    neighbours = around[chain]
    linked = (neighbours >= 0) & ~node[np.maximum(neighbours, 0)]
    links = linked.sum(axis=1)
    ends = chain[links < 2]
    root, loops = n, n + 1
    per_row = np.zeros(n + 2, dtype=np.int64)
    per_row[chain], per_row[root], per_row[loops] = links, ends.size + 1, chain.size
    indices = np.concatenate([neighbours[linked], ends, [loops], chain])
    row_starts = np.concatenate([[0], np.cumsum(per_row)])
    graph = csr_array((np.ones(indices.size), indices, row_starts), shape=(n + 2, n + 2))
    order, came_from = depth_first_order(graph, root, directed=True, return_predecessors=True)
    order = order[order < n]
    first = np.flatnonzero(came_from[order] >= n)  # where each chain begins in ``order``
    size = np.diff(np.append(first, order.size))
    # Loops in among the open chains again, every chain in the order of its first pixel's id, so
    # the lines come out in the same order however the search reached them.
    by_start = np.argsort(order[first], kind="stable")
    size = size[by_start]
    moved_first = np.cumsum(size) - size
    order = order[np.repeat(first[by_start] - moved_first, size) + np.arange(order.size)]
    first = moved_first
    # The nodes beside each chain's first and last pixel, largest id first (-1: none); a chain pixel
    # has two neighbours. Only those pixels: sorting every pixel's neighbours was a fifth of this.
    at_start, at_end = _nodes_beside(order[first], around, node), _nodes_beside(order[first + size - 1], around, node)
    head = at_start[:, 0]
    tail = np.where(size == 1, at_start[:, 1], at_end[:, 0])
    loop = (head < 0) & (tail < 0) & (size > 2)
    tail = np.where(loop, order[first], tail)
    has_head, has_tail = head >= 0, tail >= 0
    out_size = size + has_head + has_tail
    offset = np.cumsum(out_size) - out_size
    out = np.empty(int(out_size.sum()), dtype=np.int64)
    out[offset[has_head]] = head[has_head]
    out[(offset + out_size - 1)[has_tail]] = tail[has_tail]
    run = np.repeat(np.arange(first.size), size)
    out[offset[run] + has_head[run] + np.arange(order.size) - first[run]] = order
    ok = np.repeat(out_size > 1, out_size)
    return out[ok], out_size[out_size > 1]


def _nodes_beside(pixels: np.ndarray, around: np.ndarray, node: np.ndarray) -> np.ndarray:
    """(len(pixels), 2): the ids of the two largest nodes among each pixel's neighbours, -1 for none."""
    near = around[pixels]
    near = np.where((near >= 0) & node[np.maximum(near, 0)], near, -1)
    return -np.sort(-near, axis=1)[:, :2]
