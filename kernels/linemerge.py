"""Merge line pieces that meet end to end into longer lines, on coordinate arrays.

This is what ``shapely.line_merge`` does (undirected): pieces are joined at every point where
exactly two piece ends meet, and never across a junction of three or more. GEOS builds a planar
graph of objects for it, which for the 70,000 track pieces of a 20,000 px scene took 80 MB of the
client at its peak (and kept it, fragmented); here the pieces are the edges of a graph whose nodes are
the distinct end points, and chains of edges are found and put in order by scipy's csgraph.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components, depth_first_order


def merge_lines(coords: np.ndarray, offsets: np.ndarray,
                node: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines made of the pieces ``coords[offsets[k]:offsets[k + 1]]`` (each at least 2 points)
    joined end to end where exactly two ends meet, as new (coords, offsets), and the line each piece
    became part of. A chain of pieces keeps the order and direction of its first piece (the lowest
    index on a closed loop), later pieces turned round where needed, and each joint point appears once.
    Ends meet where their points are equal, or, given ``node`` (one label per end, rows 2k and
    2k + 1 for piece k's start and end), where their labels are: ends may then touch unjoined."""
    n = len(offsets) - 1
    if n == 0:
        return np.zeros((0, 2)), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    first, last = offsets[:-1], offsets[1:] - 1
    ends = np.stack([coords[first], coords[last]], axis=1).reshape(-1, 2)  # piece k: rows 2k (start), 2k + 1
    _, node = np.unique(ends if node is None else node, axis=0, return_inverse=True)
    node = node.reshape(-1)
    degree = np.bincount(node)
    # Pieces linked through every node of degree 2 (two ends of one piece there: a loop of its own).
    at_two = np.flatnonzero(degree[node] == 2)
    by_node = at_two[np.argsort(node[at_two], kind="stable")].reshape(-1, 2) // 2
    links = by_node[by_node[:, 0] != by_node[:, 1]]
    u, v = node[0::2], node[1::2]
    order, chain_start = _chain_order(n, links, free=(degree[u] != 2) | (degree[v] != 2))
    reverse = _turned_round(order, chain_start, u, v, degree)
    merged, merged_offsets = _gather(coords, offsets, order, chain_start, reverse)
    line_of = np.empty(n, dtype=np.int64)
    line_of[order] = np.repeat(np.arange(chain_start.size), np.diff(np.r_[chain_start, n]))
    return merged, merged_offsets, line_of


def _chain_order(n: int, links: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pieces, chain after chain, each chain in order from its start; and where each chain
    begins in that order. A chain is a path (starting at its lowest piece with a free end) or a
    closed loop (starting at its lowest piece)."""
    graph = coo_array((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    start = np.full(comp.max() + 1, n)
    np.minimum.at(start, comp[free], np.flatnonzero(free))
    loop = start == n
    np.minimum.at(start, comp, np.where(loop[comp], np.arange(n), n))
    order = walk_chains(n, links, start)
    is_start = np.zeros(n, dtype=bool)
    is_start[start] = True
    return order, np.flatnonzero(is_start[order])


def walk_chains(n: int, links: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Nodes 0..n-1 of a graph of chains (edges ``links``, (E, 2)), chain after chain in the order
    of their ``starts`` (one node of each chain), each chain walked depth first from its start.
    Virtual nodes n, n + 1, ... in a line, node n + k with an edge to the k-th start, make it one
    walk. (One virtual root with an edge to every start does too, but scipy's walk scans a node's
    edges again from the first each time it comes back to it: 0.32 s for the 29,000 chains of a
    20,000 px scene's track pieces.)"""
    starts = np.sort(starts)
    virtual = n + np.arange(starts.size)
    rows = np.r_[links[:, 0], virtual, virtual[:-1]]
    cols = np.r_[links[:, 1], starts, virtual[1:]]
    size = n + starts.size
    walk = coo_array((np.ones(rows.size), (rows, cols)), shape=(size, size)).tocsr()
    order = depth_first_order(walk, n, directed=False, return_predecessors=False)
    return order[order < n]


def _turned_round(order: np.ndarray, chain_start: np.ndarray, u: np.ndarray, v: np.ndarray,
                  degree: np.ndarray) -> np.ndarray:
    """Which pieces (in ``order``) run backwards. Each piece leaves by the node it did not come in
    by: tail_j = u_j + v_j - tail_(j-1), an alternating sum along the chain, so one cumulative sum
    gives every tail. The first piece's tail is the node it shares with the second (its end at a
    degree-2 node; on a path, the start is where the other end is free)."""
    uo, vo = u[order], v[order]
    size = np.diff(np.r_[chain_start, order.size])
    pos = np.arange(order.size) - np.repeat(chain_start, size)  # position within the chain
    sign = np.where(pos % 2 == 0, 1, -1)
    u0, v0 = uo[chain_start], vo[chain_start]
    nxt = np.minimum(chain_start + 1, order.size - 1)  # the second piece, where there is one
    shares_v = (v0 == uo[nxt]) | (v0 == vo[nxt])
    tail0 = np.select([size == 1, degree[u0] != 2, degree[v0] != 2, shares_v], [v0, v0, u0, v0], u0)
    w = sign * (uo + vo)
    w[chain_start] = 0
    running = np.cumsum(w)
    running -= np.repeat(running[chain_start], size)  # sums from the chain's second piece on
    tail = sign * running + sign * np.repeat(tail0, size)
    return (tail == uo) & (uo != vo)


def _gather(coords: np.ndarray, offsets: np.ndarray, order: np.ndarray, chain_start: np.ndarray,
            reverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chains' coordinates: each piece in ``order``, turned round where ``reverse``, without the
    first point of every piece but a chain's first (it repeats the joint)."""
    size = np.diff(offsets)[order]
    lead = np.ones(order.size, dtype=np.int64)  # points dropped at the front of each piece
    lead[chain_start] = 0
    keep = size - lead
    out_start = np.cumsum(keep) - keep
    total = int(keep.sum())
    piece = np.repeat(np.arange(order.size), keep)
    step = np.arange(total) - out_start[piece] + lead[piece]  # point index within the piece
    src = np.where(reverse[piece], offsets[order][piece] + size[piece] - 1 - step, offsets[order][piece] + step)
    chain_size = np.add.reduceat(keep, chain_start)
    return coords[src], np.r_[0, np.cumsum(chain_size)].astype(np.int64)
