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
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components, depth_first_order
from skimage.morphology import skeletonize

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def centre_lines(band: np.ndarray, min_length_px: int = 8) -> list[np.ndarray]:
    """Polylines (each an (N, 2) array of x, y pixel-centre coordinates) along the middle of a band
    mask. Spurs shorter than ``min_length_px`` ending free are dropped."""
    skel = skeletonize(band)
    if not skel.any():
        return []
    xy, sizes = _chains(skel)
    if not sizes.size:
        return []
    ends = np.cumsum(sizes)
    steps = np.hypot(*np.diff(xy, axis=0).T)
    steps[ends[:-1] - 1] = 0.0  # from one path's last point to the next path's first: not a step
    keep = np.add.reduceat(steps, ends - sizes) >= min_length_px
    return [p for p, k in zip(np.split(xy, ends[:-1]), keep.tolist(), strict=True) if k]


def _chains(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every chain of the skeleton with the nodes at its ends, and every pair of adjacent nodes, as
    one (M, 2) array of x, y pixel centres, path after path, and the number of points of each."""
    h, w = skel.shape
    ys, xs = np.nonzero(skel)
    n = ys.size
    ids = np.full((h + 2, w + 2), -1, dtype=np.int64)
    ids[ys + 1, xs + 1] = np.arange(n)
    around = np.stack([ids[ys + 1 + dy, xs + 1 + dx] for dy, dx in _OFFSETS], axis=1)  # (n, 8), -1: none
    node = (around >= 0).sum(axis=1) != 2
    # Every 8-neighbour pair once (low id first).
    a = np.repeat(np.arange(n), 8)
    b = around.ravel()
    pair = b > a
    a, b = a[pair], b[pair]
    both = node[a] & node[b]  # two nodes side by side: a path of their own
    in_chain = ~node[a] & ~node[b]
    ca, cb = a[in_chain], b[in_chain]
    chain = np.flatnonzero(~node)
    pieces = [np.column_stack([a[both], b[both]]).ravel()]
    sizes = [np.full(int(both.sum()), 2)]
    if chain.size:
        body, body_sizes = _ordered_chains(n, around, node, chain, ca, cb)
        pieces.append(body)
        sizes.append(body_sizes)
    xy = np.column_stack([xs + 0.5, ys + 0.5])
    return xy[np.concatenate(pieces)], np.concatenate(sizes)


def _ordered_chains(n: int, around: np.ndarray, node: np.ndarray, chain: np.ndarray, ca: np.ndarray,
                    cb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ids of each chain in order, a node prepended and appended where the chain meets one
    (a closed loop repeats its first pixel instead), and the length of each. ``n`` skeleton pixels,
    ``around`` their 8 neighbours' ids (-1: none), ``node`` which are nodes, ``chain`` the ids of the
    others, ``ca``/``cb`` the chain-to-chain neighbour pairs."""
    _, comp = connected_components(coo_array((np.ones(ca.size), (ca, cb)), shape=(n, n)), directed=False)
    # Each chain starts at an end (a pixel with a node beside it), or anywhere on a closed loop.
    links = np.bincount(ca, minlength=n) + np.bincount(cb, minlength=n)
    start = np.full(n, n)  # per component, its smallest end; then, for loops, its smallest pixel
    ends = chain[links[chain] < 2]
    np.minimum.at(start, comp[ends], ends)
    loose = start[comp[chain]] == n
    np.minimum.at(start, comp[chain[loose]], chain[loose])
    starts = np.unique(start[comp[chain]])
    root = n
    graph = coo_array((np.ones(ca.size + starts.size), (np.r_[ca, np.full(starts.size, root)], np.r_[cb, starts])),
                      shape=(n + 1, n + 1)).tocsr()
    order = depth_first_order(graph, root, directed=False, return_predecessors=False)[1:]
    is_start = np.zeros(n, dtype=bool)
    is_start[starts] = True
    first = np.flatnonzero(is_start[order])  # where each chain begins in ``order``
    size = np.diff(np.r_[first, order.size])
    # The nodes beside each chain pixel, largest id first (-1: none); a chain pixel has two neighbours.
    beside = np.where((around >= 0) & node[np.maximum(around, 0)], around, -1)
    beside = -np.sort(-beside, axis=1)[:, :2]
    head = beside[order[first], 0]
    tail = np.where(size == 1, beside[order[first], 1], beside[order[first + size - 1], 0])
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
